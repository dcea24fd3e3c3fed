// Go ttrpc client benchmark (reference): N Echo calls of a 16-byte payload
// with C concurrent goroutines on one connection.
// Usage: ttrpc-go-bench -socket PATH [-n N] [-concurrency C]
// Prints "calls_per_sec <float>".
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/types"
)

func main() {
	socket := flag.String("socket", "", "unix socket path of the server (required)")
	n := flag.Int("n", 100000, "total number of Echo calls")
	conc := flag.Int("concurrency", 1, "concurrent goroutines on the one connection")
	flag.Parse()
	if *socket == "" || *n <= 0 || *conc <= 0 {
		fmt.Fprintln(os.Stderr, "usage: ttrpc-go-bench -socket PATH [-n N] [-concurrency C]")
		os.Exit(2)
	}

	conn, err := net.Dial("unix", *socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ttrpc-go-bench: dial %s: %v\n", *socket, err)
		os.Exit(1)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()

	payload := []byte("0123456789abcdef")
	var (
		next  int64 = -1
		fails int64
		wg    sync.WaitGroup
	)
	start := time.Now()
	for g := 0; g < *conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out types.BytesValue
			for atomic.AddInt64(&next, 1) < int64(*n) {
				out.Value = nil
				err := client.Call(context.Background(), "husk.test.Echo", "Echo", &types.BytesValue{Value: payload}, &out)
				if err != nil || !bytes.Equal(out.Value, payload) {
					if atomic.AddInt64(&fails, 1) == 1 {
						fmt.Fprintf(os.Stderr, "ttrpc-go-bench: call failed: %v\n", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if fails > 0 {
		fmt.Fprintf(os.Stderr, "ttrpc-go-bench: %d calls failed\n", fails)
		os.Exit(1)
	}
	fmt.Printf("calls_per_sec %.1f\n", float64(*n)/el.Seconds())
}
