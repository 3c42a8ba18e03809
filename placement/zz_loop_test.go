package placement

import (
	"os"
	"strconv"
	"testing"
)

func TestZZLoop(t *testing.T) {
	k, _ := strconv.Atoi(os.Getenv("ZZK"))
	e := mustEngine(t, DefaultConfig())
	pools := benchPools(10000, 42)
	req := benchRequest()
	for range k {
		e.Place(req, pools, nil)
	}
}
