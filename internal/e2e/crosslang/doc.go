// Package crosslang holds the tests that prove the Go, TypeScript and
// Python SDKs give every unit the same answer: the same flags evaluated over
// the same 100,000 units in the three languages (the TypeScript side through
// node and sdk/js, the Python side through sdk/python's vigil._crosslang)
// and patterns read alike by all three; and, between Go and TypeScript,
// flags files parsed alike, pins read alike, the same metric names,
// attributes and buckets recorded, and both SDKs against a real `vigil
// serve` whose flags change through the admin API while they run. The Go
// OpenFeature provider is run against a real `vigil serve` here too, killed
// and restarted, since the sdk modules cannot start one.
package crosslang
