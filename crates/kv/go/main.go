// The kv topic's article part in Go, with etcd's own client: the twin of crates/kv/src/main.rs up to
// "-- beyond the article --". It prints the same step lines, so a test can run both against one etcd and
// compare them (crates/test-etcd/tests/go_twins.rs).
//
//	go run ./crates/kv/go --endpoints 127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

// endpoints reads --endpoints, then ETCD_ENDPOINTS, as the Rust topics do.
func endpoints() []string {
	def := os.Getenv("ETCD_ENDPOINTS")
	if def == "" {
		def = "127.0.0.1:2379"
	}
	list := flag.String("endpoints", def, "comma-separated etcd endpoints (or ETCD_ENDPOINTS)")
	flag.Parse()
	return strings.Split(*list, ",")
}

func main() {
	eps := endpoints()
	// Rust: etcd_connect::dial(.., Client::connect(endpoints, Some(options)))
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: connect to etcd at %s: %v\n", strings.Join(eps, ", "), err)
		os.Exit(1)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// clientv3.New does not wait for the server either: the first call tells.
	if _, err := cli.Status(ctx, eps[0]); err != nil {
		fmt.Fprintf(os.Stderr, "error: cannot reach etcd at %s: %v\n", strings.Join(eps, ", "), err)
		os.Exit(1)
	}
	fmt.Printf("connected to etcd at %s\n", strings.Join(eps, ", "))

	// 1. Rust: client.put("name", "ferris", None)
	put, err := cli.Put(ctx, "name", "ferris")
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: put name: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("1. put name = ferris (store revision is now %d)\n", put.Header.Revision)

	// 2. Rust: client.get("name", None)
	got, err := cli.Get(ctx, "name")
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: get name: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("2. get name")
	for _, kv := range got.Kvs {
		fmt.Printf("   %s : %s\n", kv.Key, kv.Value)
		fmt.Printf("   (created at revision %d, last modified at %d, written %d time(s))\n",
			kv.CreateRevision, kv.ModRevision, kv.Version)
	}
}
