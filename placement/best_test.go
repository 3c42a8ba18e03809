package placement

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kilnstore/kiln/internal/storage"
)

// TestPlaceBestAgreesWithPlace checks the allocation-light path chooses
// exactly what Place chooses, ties included, and fails the same way.
func TestPlaceBestAgreesWithPlace(t *testing.T) {
	e, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		n := 1 + rng.IntN(60)
		pools := make([]Pool, n)
		for i := range pools {
			free := float64(rng.IntN(4) * 10) // many ties
			pools[i] = Pool{Name: fmt.Sprintf("h%d@b#p%d", rng.IntN(5), i), TotalKind: storage.Known, TotalGB: 100,
				FreeKind: storage.Known, FreeGB: free, ThickProvisioning: true, MaxOverSubscriptionRatio: 1,
				AvailabilityZone: "nova"}
		}
		req := Request{SizeGB: int64(1 + rng.IntN(25))}
		d, perr := e.Place(req, pools, nil)
		best, berr := e.PlaceBest(req, pools, nil)
		if (perr == nil) != (berr == nil) || (perr != nil && !errors.Is(berr, ErrNoValidPool)) {
			t.Fatalf("round %d: Place err %v, PlaceBest err %v", round, perr, berr)
		}
		if perr == nil && best.Name != d.Pool.Name {
			t.Fatalf("round %d: PlaceBest chose %s, Place %s", round, best.Name, d.Pool.Name)
		}
		if perr != nil && perr.Error() != berr.Error() {
			t.Fatalf("round %d: errors differ:\n%v\n%v", round, perr, berr)
		}
	}
}
