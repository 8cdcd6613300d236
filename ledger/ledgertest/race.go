//go:build race

package ledgertest

// raceEnabled scales the heaviest tests: the race detector slows the
// transpiled SQLite down by well over an order of magnitude.
const raceEnabled = true
