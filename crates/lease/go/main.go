// The lease topic's article part in Go, with etcd's own client: the twin of crates/lease/src/main.rs up to
// "-- beyond the article --". It prints the same step lines, so a test can run both against one etcd and
// compare them (crates/test-etcd/tests/go_twins.rs).
//
//	go run ./crates/lease/go --endpoints 127.0.0.1:2379 [--ttl 20]
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

func main() {
	def := os.Getenv("ETCD_ENDPOINTS")
	if def == "" {
		def = "127.0.0.1:2379"
	}
	list := flag.String("endpoints", def, "comma-separated etcd endpoints (or ETCD_ENDPOINTS)")
	ttl := flag.Int64("ttl", 20, "the lease's TTL in seconds")
	flag.Parse()
	eps := strings.Split(*list, ",")

	// Rust: etcd_connect::dial(.., Client::connect(endpoints, Some(options)))
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: connect to etcd at %s: %v\n", *list, err)
		os.Exit(1)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Status(ctx, eps[0]); err != nil {
		fmt.Fprintf(os.Stderr, "error: cannot reach etcd at %s: %v\n", *list, err)
		os.Exit(1)
	}
	fmt.Printf("connected to etcd at %s\n", strings.Join(eps, ", "))

	// 1. Rust: client.lease_grant(ttl, None)
	grant, err := cli.Grant(ctx, *ttl)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: grant a lease of %ds: %v\n", *ttl, err)
		os.Exit(1)
	}
	id := fmt.Sprintf("%016x", int64(grant.ID))
	fmt.Printf("1. granted lease %s with a TTL of %ds\n", id, grant.TTL)

	// 2. Rust: a put-if-absent txn with PutOptions::new().with_lease(id), so that a key someone else
	//    wrote is never put on our lease (etcd would delete it with the lease).
	put, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision("name"), "=", 0)).
		Then(clientv3.OpPut("name", "ferris", clientv3.WithLease(grant.ID))).
		Commit()
	if err != nil || !put.Succeeded {
		cli.Revoke(ctx, grant.ID)
		fmt.Fprintln(os.Stderr, "error: name already exists and this program did not create it (or etcd refused the put)")
		os.Exit(1)
	}
	fmt.Printf("2. put name = ferris on lease %s (revision %d); etcd deletes it when the lease ends\n",
		id, put.Header.Revision)
}
