// The lock topic's article part in Go, with etcd's own client and its concurrency package: the twin of
// crates/lock/src/main.rs up to "-- beyond the article --". It prints the same step lines, so a test can
// run both against one etcd and compare them (crates/test-etcd/tests/go_twins.rs).
//
//	go run ./crates/lock/go --endpoints 127.0.0.1:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "error: "+format+"\n", args...)
	os.Exit(1)
}

// createRevision reads a key's create revision, or 0 if it does not exist.
func createRevision(ctx context.Context, cli *clientv3.Client, key string) int64 {
	got, err := cli.Get(ctx, key)
	if err != nil {
		fail("read %s: %v", key, err)
	}
	if len(got.Kvs) == 0 {
		return 0
	}
	return got.Kvs[0].CreateRevision
}

func main() {
	def := os.Getenv("ETCD_ENDPOINTS")
	if def == "" {
		def = "127.0.0.1:2379"
	}
	list := flag.String("endpoints", def, "comma-separated etcd endpoints (or ETCD_ENDPOINTS)")
	flag.Parse()
	eps := strings.Split(*list, ",")

	// Rust: etcd_connect::dial(.., Client::connect(endpoints, Some(options)))
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fail("connect to etcd at %s: %v", *list, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Status(ctx, eps[0]); err != nil {
		fail("cannot reach etcd at %s: %v", *list, err)
	}
	fmt.Printf("connected to etcd at %s\n", strings.Join(eps, ", "))

	// Rust: client.lease_grant(10, None) and Session::start, twice. NewSession grants the lease and keeps
	// it alive in the background; Close revokes it.
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		fail("session 1: %v", err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		fail("session 2: %v", err)
	}
	defer s2.Close()
	fmt.Printf("session 1 has lease %016x, session 2 has lease %016x (ttl %ds, renewed every %.1fs)\n",
		int64(s1.Lease()), int64(s2.Lease()), 10, 10.0/3.0)

	// 1. Rust: client.lock("/lock", Some(LockOptions::new().with_lease(session1.lease_id())))
	m1 := concurrency.NewMutex(s1, "/lock")
	if err := m1.Lock(ctx); err != nil {
		fail("session 1: lock /lock: %v", err)
	}
	fmt.Printf("1. session 1 acquired /lock: its key %s was created at revision %d\n",
		m1.Key(), createRevision(ctx, cli, m1.Key()))
	fmt.Println("   (a lock key is /lock/ and the lease ID in hex, which etcd writes without the leading zeros etcdctl shows)")

	// 2. Session 2 asks too, in a goroutine, since Lock blocks until session 1 lets go.
	m2 := concurrency.NewMutex(s2, "/lock")
	locked := make(chan error, 1)
	go func() { locked <- m2.Lock(ctx) }()
	key2 := fmt.Sprintf("/lock/%x", int64(s2.Lease()))
	queued := int64(0)
	for queued == 0 {
		if ctx.Err() != nil {
			fail("%s did not appear under /lock/ in time", key2)
		}
		time.Sleep(20 * time.Millisecond) // polls until session 2's key is written
		queued = createRevision(ctx, cli, key2)
	}
	fmt.Printf("2. session 2 is waiting for /lock: its key %s (revision %d) is queued behind %s (revision %d)\n",
		key2, queued, m1.Key(), createRevision(ctx, cli, m1.Key()))

	// 3. Rust: client.unlock(key)
	held1 := m1.Key()
	if err := m1.Unlock(ctx); err != nil {
		fail("session 1: unlock: %v", err)
	}
	fmt.Printf("3. session 1 released /lock: %s is deleted\n", held1)

	// 4. Session 2's Lock returns.
	if err := <-locked; err != nil {
		fail("session 2: lock /lock: %v", err)
	}
	fmt.Printf("4. session 2 acquired /lock: its key %s keeps revision %d from when it queued\n",
		m2.Key(), createRevision(ctx, cli, m2.Key()))
	if err := m2.Unlock(ctx); err != nil {
		fail("session 2: unlock: %v", err)
	}
	// The deferred s2.Close() and s1.Close() revoke both leases.
}
