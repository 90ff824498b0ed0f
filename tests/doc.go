// Package tests is Lifeboat's end-to-end tier: it builds the commands and
// drives them against the real casync, real ext4 images made by mkfs.ext4
// and a chunk server on loopback. It holds no code outside its tests; see
// README.md for what it covers and what it needs.
package tests
