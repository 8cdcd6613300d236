//go:build race

package sqlite

// raceEnabled scales the heaviest tests: the race detector slows the
// transpiled SQLite down by well over an order of magnitude.
const raceEnabled = true
