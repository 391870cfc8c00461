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
//! Steps 3 to 6 use keys under `--demo-prefix` (default `/kv-demo/`) and delete them at the end.
//!
//! Try next: `etcdctl get name -w json` to see the revisions printed here, then `cargo run -p watch`
//! in one terminal and this program in another.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::builder::NonEmptyStringValueParser;
use clap::Parser;
use etcd_connect::ConnectArgs;

#[derive(Debug, Parser)]
#[command(about = "PUT and GET a key, then explore revisions, prefixes and deletes")]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Key written and read in steps 1 and 2 (left in place afterwards).
    #[arg(long, default_value = "name", value_parser = NonEmptyStringValueParser::new())]
    key: String,

    /// Value written to --key.
    #[arg(long, default_value = "ferris")]
    value: String,

    /// Prefix of the demo keys used (and deleted) by steps 3 to 6.
    #[arg(long, default_value = "/kv-demo/", value_parser = NonEmptyStringValueParser::new())]
    demo_prefix: String,
}

// A tutorial program makes a handful of sequential calls: the single-threaded runtime is enough, starts
// faster, and keeps the example free of `Send` bounds a reader would have to think about.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    etcd_connect::init();
    etcd_connect::report(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<()> {
    // 0. Connect. This fails within --dial-timeout, with a hint, when no etcd answers.
    let mut client = etcd_connect::connect(&args.connect).await?;
    println!("connected to etcd at {}", args.connect.endpoints_shown());

    // 1. PUT, as in the article. The reply carries the store's new revision: a counter of all writes.
    let revision = kv::put(&mut client, &args.key, &args.value).await?;
    println!(
        "1. put {} = {} (store revision is now {revision})",
        args.key, args.value
    );

    // 2. GET it back. A GET returns a list: one key here, many for a range or prefix.
    let Some(entry) = kv::get(&mut client, &args.key).await? else {
        bail!(
            "{} was just written but is not there; is another client deleting it?",
            args.key
        );
    };
    println!("2. get {}", args.key);
    println!("   {} : {}", entry.key, entry.value);
    println!(
        "   (created at revision {}, last modified at {}, written {} time(s))",
        entry.create_revision, entry.mod_revision, entry.version
    );

    println!("-- beyond the article --");
    let color = format!("{}color", args.demo_prefix);

    // 3. PUT with prev_kv: the old value comes back in the same reply, so nothing can slip in between
    //    a separate read and write.
    let first_revision = kv::put(&mut client, &color, "red").await?;
    let (revision, previous) = kv::put_returning_previous(&mut client, &color, "blue").await?;
    let previous = previous.map_or("(none)".to_string(), |p| p.value);
    println!("3. put {color} = red (revision {first_revision}), then = blue (revision {revision}); prev_kv returned: {previous}");

    // 4. GET by prefix, sorted by key. A "directory" in etcd is only a key prefix.
    for (name, value) in [("fruit", "apple"), ("animal", "crab")] {
        kv::put(&mut client, &format!("{}{name}", args.demo_prefix), value).await?;
    }
    let listed = kv::list_prefix(&mut client, &args.demo_prefix).await?;
    println!(
        "4. get --prefix {} (sorted by key): {} keys",
        args.demo_prefix,
        listed.len()
    );
    for entry in &listed {
        println!(
            "   {} : {} (mod revision {})",
            entry.key, entry.value, entry.mod_revision
        );
    }

    // 5. GET at an older revision: the store still remembers what `color` was before step 3's overwrite.
    let then = kv::get_at_revision(&mut client, &color, first_revision).await?;
    let now = kv::get(&mut client, &color).await?;
    println!(
        "5. {color} at revision {first_revision} was {}, now it is {}",
        then.map_or("(absent)".into(), |e| e.value),
        now.map_or("(absent)".into(), |e| e.value)
    );

    // 6. DELETE the demo keys by prefix, with prev_kv to see what went. `--key` stays for you to inspect.
    let (revision, deleted) = kv::delete_prefix(&mut client, &args.demo_prefix).await?;
    let names: Vec<&str> = deleted.iter().map(|e| e.key.as_str()).collect();
    println!(
        "6. deleted {} keys under {} at revision {revision}: {}",
        deleted.len(),
        args.demo_prefix,
        names.join(", ")
    );
    println!(
        "done: `{}` is still stored; try `etcdctl get {}`",
        args.key, args.key
    );
    Ok(())
}
