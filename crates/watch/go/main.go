// The watch topic's article part in Go, with etcd's own client: the twin of crates/watch/src/main.rs. It
// prints the same lines, so a test can run both against one etcd and compare them
// (crates/test-etcd/tests/go_twins.rs).
//
//	go run ./crates/watch/go --endpoints 127.0.0.1:2379 [--count N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	def := os.Getenv("ETCD_ENDPOINTS")
	if def == "" {
		def = "127.0.0.1:2379"
	}
	list := flag.String("endpoints", def, "comma-separated etcd endpoints (or ETCD_ENDPOINTS)")
	count := flag.Int("count", 0, "stop after this many changes (0: at Ctrl-C)")
	flag.Parse()
	eps := strings.Split(*list, ",")

	// Rust: etcd_connect::dial(.., Client::connect(endpoints, Some(options)))
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: connect to etcd at %s: %v\n", *list, err)
		os.Exit(1)
	}
	defer cli.Close()
	probe, cancelProbe := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelProbe()
	if _, err := cli.Status(probe, eps[0]); err != nil {
		fmt.Fprintf(os.Stderr, "error: cannot reach etcd at %s: %v\n", *list, err)
		os.Exit(1)
	}
	fmt.Printf("connected to etcd at %s\n", strings.Join(eps, ", "))

	// Ctrl-C or SIGTERM cancels the context, and with it the watch.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Rust: client.watch_client().max_decoding_message_size(MAX_RESPONSE).watch("name", None). Go's
	// WatchChan hides etcd's confirmation; WithCreatedNotify passes it on, with the store revision.
	wch := cli.Watch(ctx, "name", clientv3.WithCreatedNotify())
	created, ok := <-wch
	if !ok || !created.Created {
		fmt.Fprintln(os.Stderr, "error: etcd did not confirm the watch on name")
		os.Exit(1)
	}
	until := "Ctrl-C to stop"
	if *count > 0 {
		until = fmt.Sprintf("stopping after %d change(s) or Ctrl-C", *count)
	}
	fmt.Printf("watching name from revision %d; %s\n", created.Header.Revision+1, until)

	seen := 0
	for resp := range wch {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypePut {
				fmt.Printf("PUT %s = %s (revision %d)\n", ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
			} else {
				fmt.Printf("DELETE %s (revision %d)\n", ev.Kv.Key, ev.Kv.ModRevision)
			}
			seen++
			if seen == *count {
				fmt.Printf("saw %d change(s), as asked by --count\n", seen)
				return
			}
		}
	}
	// The channel closes when the context is cancelled: the client cancels the watch on the server.
	fmt.Println("stopped (Ctrl-C): watch canceled")
}
