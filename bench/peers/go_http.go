// Peer for the HTTP benchmark: the same "Hello, World!" server as examples/http_hello,
// on Go's net/http (keep-alive and pipelining as net/http does them: requests of one
// connection are answered in order; the response is buffered and flushed when the
// handler returns). The Date header Go adds by default is suppressed so that the
// response bytes match corio's and Asio's:
//
//   HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!
//
// Threads: GOMAXPROCS (the benchmark script sets it like the other servers' thread count).
//
// Usage: go run go_http.go PORT      (runs until SIGINT/SIGTERM)
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

var hello = []byte("Hello, World!")

func handler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Date"] = nil // no Date header
	if r.URL.Path != "/" {
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{"10"}
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("Not Found\n"))
		return
	}
	h["Content-Length"] = []string{"13"}
	h["Content-Type"] = []string{"text/plain"}
	w.Write(hello)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s PORT\n", os.Args[0])
		os.Exit(2)
	}
	srv := &http.Server{Addr: "127.0.0.1:" + os.Args[1], Handler: http.HandlerFunc(handler)}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		srv.Shutdown(context.Background())
	}()
	fmt.Printf("go http server on %s, GOMAXPROCS %d\n", srv.Addr, runtime.GOMAXPROCS(0))
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
