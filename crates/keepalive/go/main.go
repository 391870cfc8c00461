// The keepalive topic's article part in Go, with etcd's own client: the twin of crates/keepalive/src/main.rs.
// It prints the same step lines, so a test can run both against one etcd and compare them
// (crates/test-etcd/tests/go_twins.rs).
//
//	go run ./crates/keepalive/go --endpoints 127.0.0.1:2379 [--count N]
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
	count := flag.Int("count", 0, "revoke after this many renewals (0: at Ctrl-C)")
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

	// 1. Rust: client.lease_grant(5, None)
	grant, err := cli.Grant(ctx, 5)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: grant a lease: %v\n", err)
		os.Exit(1)
	}
	id := fmt.Sprintf("%016x", int64(grant.ID))
	fmt.Printf("1. granted lease %s with a TTL of %ds\n", id, grant.TTL)

	// 2. Rust: put-if-absent with PutOptions::new().with_lease(id)
	put, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision("name"), "=", 0)).
		Then(clientv3.OpPut("name", "ferris", clientv3.WithLease(grant.ID))).
		Commit()
	if err != nil || !put.Succeeded {
		cli.Revoke(ctx, grant.ID)
		fmt.Fprintln(os.Stderr, "error: name already exists and this program did not create it (or etcd refused the put)")
		os.Exit(1)
	}
	fmt.Printf("2. put name = ferris on lease %s (revision %d)\n", id, put.Header.Revision)

	// 3. Rust: client.lease_keep_alive(id), then KeptLease::renew_when_due in a loop. Go's KeepAlive
	//    renews by itself, every third of the TTL, and hands each answer to this channel.
	stopped, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	answers, err := cli.KeepAlive(stopped, grant.ID)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: keep lease %s alive: %v\n", id, err)
		os.Exit(1)
	}
	every := float64(grant.TTL) / 3
	fmt.Printf("3. keep-alive stream open; renewing every %.1fs (a third of the TTL); Ctrl-C revokes the lease\n", every)
	why := "Ctrl-C"
	renewals := 0
	for answer := range answers {
		renewals++
		fmt.Printf("   ttl: %d (renewal %d: lease %s has %ds again)\n", answer.TTL, renewals, id, answer.TTL)
		if renewals == *count {
			why = "--count reached"
			break
		}
	}

	// Rust: client.lease_revoke(id), bounded by the dial timeout (ExitBudget).
	revoke, cancelRevoke := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelRevoke()
	if _, err := cli.Revoke(revoke, grant.ID); err != nil {
		fmt.Fprintf(os.Stderr, "error: revoke lease %s: %v\n", id, err)
		os.Exit(1)
	}
	fmt.Printf("%s: revoked lease %s, so etcd deleted name at once\n", why, id)
}
