// A module of its own so that the main module's ./... (go vet, go test)
// never builds this guest-only helper.
module kiln-guest-exitcode

go 1.21
