// Package readme holds the code samples of grpctrace's README as Example
// tests: go test compiles each, runs it and checks its output, and
// TestREADMESamplesAreExamples checks that every Go block of the README is
// the code of one of them, so the README cannot drift from code that works.
package readme
