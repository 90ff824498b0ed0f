//go:build race

package verity

const raceEnabled = true
