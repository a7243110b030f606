// Peer for BM_spawn: start a goroutine that does nothing and wait for it, in batches.
// Prints one JSON object like the Python peers: {"go_spawn": {"items_per_second": ...}}.
package main

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

func run(n int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	const batch = 1024
	for done := 0; done < n; done += batch {
		wg.Add(batch)
		for i := 0; i < batch; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
	}
	return time.Since(start)
}

func main() {
	n := 1 << 16
	for run(n) < 300*time.Millisecond {
		n *= 2
	}
	best := time.Duration(1 << 62)
	for r := 0; r < 3; r++ {
		if d := run(n); d < best {
			best = d
		}
	}
	out := map[string]map[string]float64{
		"go_spawn": {
			"items_per_second": float64(n) / best.Seconds(),
			"ns_per_item":      float64(best.Nanoseconds()) / float64(n),
		},
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
