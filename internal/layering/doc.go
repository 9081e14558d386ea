// Package layering holds no code: its test keeps the module's dependency
// direction (DESIGN.md, "Dependency direction") and the import promises of
// each package's doc.go true, by reading `go list -deps` of every package.
// It lives at the top of the module because the rules span all of it.
package layering
