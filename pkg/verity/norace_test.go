//go:build !race

package verity

const raceEnabled = false
