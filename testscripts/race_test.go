//go:build race

package testscripts

// raceEnabled reports whether the race detector is on: it multiplies memory
// use several times, so scripts that measure RSS against a bound skip the
// bound under [race] (the number is still printed).
const raceEnabled = true
