package placement

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestRadixSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	gens := map[string]func(n int) []uint64{
		"random": func(n int) []uint64 {
			v := make([]uint64, n)
			for i := range v {
				v[i] = r.Uint64()
			}
			return v
		},
		"few values": func(n int) []uint64 {
			v := make([]uint64, n)
			for i := range v {
				v[i] = uint64(r.IntN(3)) << 40
			}
			return v
		},
		"all equal": func(n int) []uint64 {
			v := make([]uint64, n)
			for i := range v {
				v[i] = 42
			}
			return v
		},
		"low bits only": func(n int) []uint64 {
			v := make([]uint64, n)
			for i := range v {
				v[i] = 1<<63 | uint64(r.IntN(1000))
			}
			return v
		},
		"sorted descending": func(n int) []uint64 {
			v := make([]uint64, n)
			for i := range v {
				v[i] = uint64(n - i)
			}
			return v
		},
		"one outlier": func(n int) []uint64 {
			v := make([]uint64, n)
			for i := range v {
				v[i] = uint64(r.IntN(100))
			}
			if n > 0 {
				v[n/2] = math.MaxUint64
			}
			return v
		},
		"weights": func(n int) []uint64 {
			v := make([]uint64, n)
			for i := range v {
				v[i] = descKey(r.Float64() * r.Float64())
			}
			return v
		},
	}
	for name, gen := range gens {
		for _, n := range []int{0, 1, 2, 24, 25, 100, 257, 3000, 20000} {
			v := gen(n)
			want := slices.Clone(v)
			slices.Sort(want)
			radixSort(v, make([]uint64, n))
			if !slices.Equal(v, want) {
				t.Errorf("%s, n=%d: radixSort differs from slices.Sort", name, n)
			}
		}
	}
}

func TestDescKey(t *testing.T) {
	ws := []float64{math.Inf(1), math.MaxFloat64, 2, 1, 0.5, math.SmallestNonzeroFloat64, 0, math.Copysign(0, -1), -math.SmallestNonzeroFloat64, -1, -math.MaxFloat64, math.Inf(-1), math.NaN()}
	for i := 1; i < len(ws); i++ {
		a, b := descKey(ws[i-1]), descKey(ws[i])
		same := ws[i-1] == ws[i] // +0 and -0
		if (same && a != b) || (!same && a >= b) {
			t.Errorf("descKey(%v)=%x, descKey(%v)=%x: want descending order", ws[i-1], a, ws[i], b)
		}
	}
}

// TestSortRanked checks the radix ranking against a comparison sort by
// weight, then name, then input position, on inputs with ties, near-ties,
// duplicate names, signed zeros and NaN.
func TestSortRanked(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 3, 30, 1000, 9000} {
		for round := range 4 {
			s := make([]Scored, n)
			for i := range s {
				var w float64
				switch r.IntN(8) {
				case 0:
					w = 0
				case 1:
					w = math.Copysign(0, -1)
				case 2:
					w = 0.5
				case 3:
					w = math.Nextafter(0.5, 1) // differs in the last bit only
				case 4:
					w = -r.Float64()
				default:
					w = r.Float64()
				}
				if round == 3 && i%97 == 0 {
					w = math.NaN()
				}
				s[i] = Scored{Pool: fmt.Sprintf("p%d", r.IntN(n)), Weight: w}
			}
			type entry struct {
				s   Scored
				pos int
			}
			want := make([]entry, n)
			for i := range s {
				want[i] = entry{s[i], i}
			}
			slices.SortFunc(want, func(a, b entry) int {
				if c := cmp.Compare(descKey(a.s.Weight), descKey(b.s.Weight)); c != 0 {
					return c
				}
				if c := strings.Compare(a.s.Pool, b.s.Pool); c != 0 {
					return c
				}
				return cmp.Compare(a.pos, b.pos)
			})
			best := sortRanked(s)
			if best != want[0].pos {
				t.Fatalf("n=%d: best = %d, want %d", n, best, want[0].pos)
			}
			for i := range s {
				g, w := s[i], want[i].s
				if g.Pool != w.Pool || math.Float64bits(g.Weight) != math.Float64bits(w.Weight) {
					t.Fatalf("n=%d round %d: position %d = %+v, want %+v", n, round, i, g, w)
				}
			}
		}
	}
}

// TestFilterPathsAgree runs the fixed-sequence filter path and the generic
// loop over the same pools and request and expects the same verdicts and
// reasons.
func TestFilterPathsAgree(t *testing.T) {
	e := mustEngine(t, DefaultConfig())
	pools := benchPools(3000, 9)
	req := benchRequest()
	req.Tried = []string{pools[1].Name, pools[2].Name}
	req.DifferentBackendFrom = []string{pools[4].Name}
	req.SameBackendAs = []string{pools[4].Name, pools[40].Name, pools[400].Name}
	fast, slow := e.prepare(&req), e.prepare(&req)
	if !fast.inOrder {
		t.Fatal("default configuration is not in order")
	}
	slow.inOrder = false
	var fastIDs, slowIDs []int32
	for i := range pools {
		fastIDs = append(fastIDs, fast.filter(&pools[i]))
		slowIDs = append(slowIDs, slow.filter(&pools[i]))
	}
	fast.finish()
	slow.finish()
	text := func(r *request, id int32) string {
		if id < 0 {
			return "pass"
		}
		return e.filters[r.reasons[id].filter].name + ": " + r.text(id)
	}
	passed := 0
	for i := range pools {
		a, b := text(fast, fastIDs[i]), text(slow, slowIDs[i])
		if a != b {
			t.Fatalf("%s: in-order path says %q, generic loop %q", pools[i].Name, a, b)
		}
		if a == "pass" {
			passed++
		}
	}
	if len(fast.texts) < 2 {
		t.Errorf("reasons fit in %d chunk(s): the test does not cross a chunk boundary", len(fast.texts))
	}
	if passed == 0 || passed == len(pools) {
		t.Fatalf("%d of %d passed: the request does not exercise both outcomes", passed, len(pools))
	}
}
