// Package crosslang holds the test that proves the Go and TypeScript SDKs
// give every unit the same answer: it evaluates the same flags over the same
// 100,000 units in both languages (the TypeScript side through node and
// sdk/js) and compares every variant, reason and error type.
package crosslang
