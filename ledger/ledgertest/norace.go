//go:build !race

package ledgertest

const raceEnabled = false
