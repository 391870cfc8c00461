//! # kv: PUT and GET
//!
//! The article's first program: connect to etcd, PUT the key `name`, GET it back, print `name : <value>`.
//! Then it goes further, because PUT/GET alone hides what makes etcd useful: every write creates a new
//! *revision* of the whole store, and the old ones stay readable until they are compacted (MVCC).
//!
//! Run it (with an etcd from `scripts/etcd.sh up`):
//!
//! ```text
//! cargo run -p kv
//! cargo run -p kv -- --key k1 --value v1
//! etcdctl get name            # the program leaves `name` in place for you to check
//! RUST_LOG=debug cargo run -p kv
//! ```
//!
//! Steps 3 to 6 write under `--demo-prefix` (default `/kv-demo/`), which must be empty (checked before
//! anything is written, `name` included) and must not contain `--key`, and delete exactly the keys they
//! wrote at the end.
//!
//! Try next: `etcdctl get name -w json` to see the revisions printed here, then `cargo run -p watch`
//! in one terminal and this program in another. For a prefix with many keys, read `get_prefix_in_pages`
//! in `src/lib.rs`.

mod cli;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};

// A tutorial program makes a handful of sequential calls: the single-threaded runtime is enough, starts
// faster, and keeps the example free of `Send` bounds a reader would have to think about.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    recipes::errors::report(run(cli::Args::parse()).await)
}

async fn run(args: cli::Args) -> Result<()> {
    let (key, value, prefix) = (&args.key, &args.value, &args.demo_prefix);

    // --key stays in place after the run, and the demo prefix must be empty before it and is emptied
    // after it: a key inside the prefix cannot be both. Refuse before connecting.
    if key.starts_with(prefix.as_str()) {
        bail!(
            "--key {key} is inside --demo-prefix {prefix}, which steps 3 to 6 use as scratch space and \
             empty again; choose a --key outside {prefix}, or another --demo-prefix"
        );
    }

    // 0. Connect. Underneath, `etcd_connect::connect` calls `Client::connect(endpoints, options)` and then
    //    asks the server for its `status()` within --dial-timeout. The probe is needed because
    //    `Client::connect` is lazy: it succeeds even when nothing listens, and the first real call would
    //    fail far from the cause. Read crates/etcd-connect/src/lib.rs for the details.
    let mut client = etcd_connect::connect(&args.connect).await?;
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // Before anything is written: steps 3 to 6 use the demo prefix as scratch space, and step 6 cleans up
    // after us and must only ever delete what this run wrote. So the prefix must be empty, and checked
    // before the first write, so that a refused run leaves etcd as it found it. `with_keys_only` and
    // `with_limit` keep the check cheap on a busy prefix.
    let existing = client
        .get(
            prefix.as_str(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(3),
            ),
        )
        .await
        .with_context(|| format!("check that {prefix} is empty"))?;
    if existing.count() > 0 {
        let keys: Vec<_> = existing
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()))
            .collect();
        bail!(
            "{prefix} already holds {} key(s) ({}{}), which this program did not write; choose an empty \
             --demo-prefix (or, if they are left from an interrupted run, `etcdctl del --prefix {prefix}`)",
            existing.count(),
            keys.join(", "),
            if existing.count() > keys.len() as i64 { ", ..." } else { "" }
        );
    }

    // 1. PUT, as in the article. The reply's header carries the store's new revision: a counter of every
    //    write to any key, which is what watches and old reads refer to.
    let put = client
        .put(key.as_str(), value.as_str(), None)
        .await
        .with_context(|| format!("put {key}"))?;
    let revision = put.header().map_or(0, |h| h.revision());
    println!("1. put {key} = {value} (store revision is now {revision})");

    // 2. GET it back. A GET is a range read: it returns a list of key-values, empty (not an error) when
    //    the key does not exist.
    let got = client
        .get(key.as_str(), None)
        .await
        .with_context(|| format!("get {key}"))?;
    let Some(entry) = got.kvs().first() else {
        bail!("{key} was just written but is not there; is another client deleting it?");
    };
    println!("2. get {key}");
    println!(
        "   {} : {}",
        String::from_utf8_lossy(entry.key()),
        String::from_utf8_lossy(entry.value())
    );
    println!(
        "   (created at revision {}, last modified at {}, written {} time(s))",
        entry.create_revision(),
        entry.mod_revision(),
        entry.version()
    );

    println!("-- beyond the article --");

    // 3. PUT with prev_kv: the old value comes back in the same reply, so no other client can write
    //    between a separate read and write.
    let color = format!("{prefix}color");
    let red = client
        .put(color.as_str(), "red", None)
        .await
        .with_context(|| format!("put {color}"))?;
    let red_revision = red.header().map_or(0, |h| h.revision());
    let blue = client
        .put(
            color.as_str(),
            "blue",
            Some(PutOptions::new().with_prev_key()),
        )
        .await
        .with_context(|| format!("put {color} with prev_kv"))?;
    let previous = blue.prev_key().map_or("(none)".into(), |kv| {
        String::from_utf8_lossy(kv.value()).into_owned()
    });
    println!(
        "3. put {color} = red (revision {red_revision}), then = blue (revision {}); prev_kv returned: {previous}",
        blue.header().map_or(0, |h| h.revision())
    );
    // Every key this run creates, with its create revision: step 6 deletes these and nothing else.
    let mut created = vec![(color.clone(), red_revision)];

    // 4. GET by prefix, sorted by key. A "directory" in etcd is only a key prefix, and one range read
    //    returns all of it. (For a prefix with many keys or big values, read it in pages at one revision:
    //    `kv::get_prefix_in_pages` in src/lib.rs.)
    for (name, value) in [("fruit", "apple"), ("animal", "crab")] {
        let key = format!("{prefix}{name}");
        let put = client
            .put(key.as_str(), value, None)
            .await
            .with_context(|| format!("put {key}"))?;
        created.push((key, put.header().map_or(0, |h| h.revision())));
    }
    let listed = client
        .get(
            prefix.as_str(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Ascend),
            ),
        )
        .await
        .with_context(|| format!("get prefix {prefix}"))?;
    println!(
        "4. get --prefix {prefix} (sorted by key): {} keys",
        listed.count()
    );
    for kv in listed.kvs() {
        println!(
            "   {} : {} (mod revision {})",
            String::from_utf8_lossy(kv.key()),
            String::from_utf8_lossy(kv.value()),
            kv.mod_revision()
        );
    }

    // 5. GET at an older revision: the store still remembers what `color` was before step 3's overwrite.
    let then = client
        .get(
            color.as_str(),
            Some(GetOptions::new().with_revision(red_revision)),
        )
        .await
        .with_context(|| format!("get {color} at revision {red_revision}"))?;
    let now = client
        .get(color.as_str(), None)
        .await
        .with_context(|| format!("get {color}"))?;
    let shown = |kvs: &[etcd_client::KeyValue]| {
        kvs.first().map_or("(absent)".into(), |kv| {
            String::from_utf8_lossy(kv.value()).into_owned()
        })
    };
    println!(
        "5. {color} at revision {red_revision} was {}, now it is {}",
        shown(then.kvs()),
        shown(now.kvs())
    );

    // 6. Clean up, deleting only what this run created: one transaction whose guards check that each key
    //    still has the create revision we gave it. A key another client deleted and wrote again has a new
    //    create revision, so the guard fails and nothing is deleted. (A plain `delete(prefix, with_prefix())`
    //    would also take any key someone else put under the prefix.) `--key` stays for you to inspect.
    let guards: Vec<Compare> = created
        .iter()
        .map(|(key, rev)| Compare::create_revision(key.as_str(), CompareOp::Equal, *rev))
        .collect();
    let deletes: Vec<TxnOp> = created
        .iter()
        .map(|(key, _)| TxnOp::delete(key.as_str(), Some(DeleteOptions::new().with_prev_key())))
        .collect();
    let cleanup = client
        .txn(Txn::new().when(guards).and_then(deletes))
        .await
        .with_context(|| format!("delete the demo keys under {prefix}"))?;
    if !cleanup.succeeded() {
        bail!(
            "left the demo keys under {prefix} in place: another client re-created one of them after this \
             run wrote it (see `etcdctl get --prefix {prefix}`)"
        );
    }
    let mut deleted: Vec<String> = cleanup
        .op_responses()
        .iter()
        .filter_map(|op| match op {
            TxnOpResponse::Delete(d) => d
                .prev_kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()),
            _ => None,
        })
        .collect();
    deleted.sort();
    println!(
        "6. deleted the {} keys this run created under {prefix}, in one transaction at revision {}: {}",
        deleted.len(),
        cleanup.header().map_or(0, |h| h.revision()),
        deleted.join(", ")
    );
    println!("done: `{key}` is still stored; try `etcdctl get {key}`");
    Ok(())
}
