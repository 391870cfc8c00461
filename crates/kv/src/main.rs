//! # kv: PUT and GET
//!
//! The article's first program: connect to etcd, PUT the key `name`, GET it back, print `name : <value>`.
//! Then what PUT/GET alone hides: every write creates a new *revision* of the whole store, and the old
//! ones stay readable until they are compacted (MVCC).
//!
//! ```text
//! cargo run -p kv                          # with an etcd from `scripts/etcd.sh up`
//! cargo run -p kv -- --key k1 --value v1
//! etcdctl get name -w json                 # `name` stays, with the revisions printed here
//! ```
//!
//! Steps 3 to 6 write under `--demo-prefix` (default `/kv-demo/`), which must be empty and must not hold
//! `--key`, and delete exactly the keys they wrote. For a prefix with many keys, read
//! `get_prefix_in_pages` in `src/lib.rs`.

mod cli;
mod steps;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, GetOptions, PutOptions, SortOrder, SortTarget};

use steps::{revision, text, value_of};

// A handful of calls, one after the other: the single-threaded runtime is enough, and starts faster.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let (key, value, prefix) = (&args.key, &args.value, &args.demo_prefix);
    steps::key_outside_prefix(key, prefix)?; // a mistake in the arguments: refused before connecting

    // 0. Connect. `Client::connect` is lazy: it succeeds even when nothing listens. So `dial` first asks
    //    each endpoint for its `status()` within --dial-timeout, and explains a failure in one line.
    // Go: cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout})
    let mut client = etcd_connect::dial(&args.connect, |endpoints, options| {
        Client::connect(endpoints, Some(options))
    })
    .await?;
    println!("connected to etcd at {}", args.connect.endpoints_shown());
    // Step 6 deletes what steps 3 to 5 wrote, and must delete nothing else: so the demo prefix must be
    // empty, checked before the first write, so that a refused run leaves etcd as it found it.
    steps::demo_prefix_is_empty(&mut client, prefix).await?;

    // 1. PUT. The reply's header carries the store's new revision: a counter of every write to any key,
    //    which is what watches and old reads refer to.
    // Go: _, err = cli.Put(ctx, key, value)
    let put = client.put(key.as_str(), value.as_str(), None).await;
    let put = put.with_context(|| format!("put {key}"))?;
    let store_revision = revision(put.header());
    println!("1. put {key} = {value} (store revision is now {store_revision})");

    // 2. GET it back. A GET is a range read: a list of key-values, empty (not an error) when the key
    //    does not exist. Each entry also says when the key was created and last written.
    // Go: resp, err := cli.Get(ctx, key) (for one key, resp.Kvs holds at most one entry)
    let got = client.get(key.as_str(), None).await;
    let got = got.with_context(|| format!("get {key}"))?;
    let Some(entry) = got.kvs().first() else {
        bail!("{key} was just written but is not there; is another client deleting it?");
    };
    println!("2. get {key}");
    println!("   {} : {}", text(entry.key()), text(entry.value()));
    let (created, modified) = (entry.create_revision(), entry.mod_revision());
    let written = entry.version();
    println!("   (created at revision {created}, last modified at {modified}, written {written} time(s))");

    println!("-- beyond the article --");
    let (color, red) = put_with_prev_kv(&mut client, prefix).await?;
    let mut created = vec![(color.clone(), red)]; // each key this run creates, with its create revision
    created.extend(get_prefix(&mut client, prefix).await?);
    get_at_revision(&mut client, &color, red).await?;
    // 6. is in src/steps.rs: one transaction that deletes these keys, and only if no one re-created them.
    steps::delete_what_this_run_created(&mut client, prefix, &created).await?;
    println!("done: `{key}` is still stored; try `etcdctl get {key}`");
    Ok(())
}

/// 3. PUT with prev_kv: the old value comes back in the same reply, so no other client can write between
///    a separate read and write. Returns the key and the revision of its first write.
async fn put_with_prev_kv(client: &mut Client, prefix: &str) -> Result<(String, i64)> {
    let color = format!("{prefix}color");
    let red = client.put(color.as_str(), "red", None).await;
    let red = revision(red.with_context(|| format!("put {color}"))?.header());
    // Go: cli.Put(ctx, key, "blue", clientv3.WithPrevKV())
    let with_prev = Some(PutOptions::new().with_prev_key());
    let blue = client.put(color.as_str(), "blue", with_prev).await;
    let blue = blue.with_context(|| format!("put {color} with prev_kv"))?;
    let previous = blue
        .prev_key()
        .map_or("(none)".into(), |kv| text(kv.value()));
    let blue_revision = revision(blue.header());
    println!(
        "3. put {color} = red (revision {red}), then = blue (revision {blue_revision}); prev_kv returned: {previous}"
    );
    Ok((color, red))
}

/// 4. GET by prefix, sorted by key. A "directory" in etcd is only a key prefix, and one range read
///    returns all of it. (For many keys or big values, read it in pages: `kv::get_prefix_in_pages`.)
///    Returns the keys it wrote, with their create revisions.
async fn get_prefix(client: &mut Client, prefix: &str) -> Result<Vec<(String, i64)>> {
    let mut created = Vec::new();
    for (name, value) in [("fruit", "apple"), ("animal", "crab")] {
        let key = format!("{prefix}{name}");
        let put = client.put(key.as_str(), value, None).await;
        let put = put.with_context(|| format!("put {key}"))?;
        created.push((key, revision(put.header())));
    }
    // Go: cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(SortByKey, SortAscend))
    let sorted = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Key, SortOrder::Ascend);
    let listed = client.get(prefix, Some(sorted)).await;
    let listed = listed.with_context(|| format!("get prefix {prefix}"))?;
    let count = listed.count();
    println!("4. get --prefix {prefix} (sorted by key): {count} keys");
    for kv in listed.kvs() {
        let (key, value, modified) = (text(kv.key()), text(kv.value()), kv.mod_revision());
        println!("   {key} : {value} (mod revision {modified})");
    }
    Ok(created)
}

/// 5. GET at an older revision: the store still remembers what `color` was before step 3's overwrite.
async fn get_at_revision(client: &mut Client, color: &str, red: i64) -> Result<()> {
    // Go: cli.Get(ctx, key, clientv3.WithRev(rev))
    let at_red = Some(GetOptions::new().with_revision(red));
    let then = client.get(color, at_red).await;
    let then = then.with_context(|| format!("get {color} at revision {red}"))?;
    let now = client.get(color, None).await;
    let now = now.with_context(|| format!("get {color}"))?;
    let (then, now) = (value_of(then.kvs()), value_of(now.kvs()));
    println!("5. {color} at revision {red} was {then}, now it is {now}");
    Ok(())
}
