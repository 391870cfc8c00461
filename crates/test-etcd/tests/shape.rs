//! The shape of the lessons (issue 16), checked so that it cannot drift:
//! - each topic's `src/main.rs` stays within its limit: 150 lines for the article's topics, 200 for the others;
//! - no function in a topic crate's `src/` is over 80 lines;
//! - each article topic shows `Client::connect(..)` as code within its first 60 lines, and names the Go call
//!   each of the article's calls stands for (`// Go: ...`);
//! - each recipe is defined once in the workspace, in `crates/recipes`, and no topic keeps a copy;
//! - README.md's table of main.rs lines and first etcd-client call is true.

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The article's topics, in the article's order, with the Go calls each must name in a `// Go:` comment.
const ARTICLE: &[(&str, &[&str])] = &[
    ("kv", &["clientv3.New", "Put", "Get"]),
    ("watch", &["clientv3.New", "Watch"]),
    ("lease", &["clientv3.New", "Grant", "WithLease"]),
    ("keepalive", &["clientv3.New", "Grant", "KeepAlive"]),
    (
        "lock",
        &["clientv3.New", "NewSession", "NewMutex", "Lock", "Unlock"],
    ),
];

/// The topics beyond the article.
const OTHERS: &[&str] = &["txn", "election", "discovery", "secure", "bench"];

fn limit(topic: &str) -> usize {
    if ARTICLE.iter().any(|(t, _)| *t == topic) {
        150
    } else {
        200
    }
}

fn topics() -> Vec<&'static str> {
    ARTICLE
        .iter()
        .map(|(t, _)| *t)
        .chain(OTHERS.iter().copied())
        .collect()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn main_rs(topic: &str) -> String {
    read(&repo().join(format!("crates/{topic}/src/main.rs")))
}

/// Every `.rs` file under `crates/<krate>/src`, sub-folders included.
fn sources(krate: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join(format!("crates/{krate}/src")), &mut files);
    files.sort();
    files
}

/// The functions of a Rust source that are longer than `max` lines, from their `fn` line to the closing
/// brace at the same indentation, as `name (N lines, line L)`.
fn long_functions(source: &str, max: usize) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(crate) async fn ",
        ]
        .iter()
        .any(|p| code.starts_with(p));
        if !is_fn || line.trim_end().ends_with(';') {
            continue;
        }
        let close = " ".repeat(indent) + "}";
        let Some(end) = (at..lines.len()).find(|&i| lines[i].trim_end() == close) else {
            continue;
        };
        let length = end - at + 1;
        if length > max {
            let name = code.split('(').next().unwrap_or(code);
            found.push(format!("{name} ({length} lines, line {})", at + 1));
        }
    }
    found
}

#[test]
fn every_main_rs_stays_within_its_limit() {
    let over: Vec<String> = topics()
        .into_iter()
        .filter_map(|topic| {
            let lines = main_rs(topic).lines().count();
            (lines > limit(topic)).then(|| {
                format!(
                    "crates/{topic}/src/main.rs: {lines} lines, over {}",
                    limit(topic)
                )
            })
        })
        .collect();
    assert!(over.is_empty(), "{over:#?}");
}

#[test]
fn no_function_in_a_topic_is_over_80_lines() {
    let mut over = Vec::new();
    for topic in topics() {
        for file in sources(topic) {
            for long in long_functions(&read(&file), 80) {
                over.push(format!("{}: {long}", file.display()));
            }
        }
    }
    assert!(over.is_empty(), "{over:#?}");
}

#[test]
fn the_function_length_check_finds_a_long_function() {
    let body = "    x();\n".repeat(81);
    let source = format!("fn short() {{\n}}\n\npub async fn long(a: u8) {{\n{body}}}\n");
    assert_eq!(
        long_functions(&source, 80),
        ["pub async fn long (83 lines, line 4)"]
    );
}

/// The line (from 1) of the first `Client::connect(` in code, not in a comment.
fn connect_line(source: &str) -> Option<usize> {
    source
        .lines()
        .position(|l| {
            l.split("//")
                .next()
                .unwrap_or("")
                .contains("Client::connect(")
        })
        .map(|at| at + 1)
}

#[test]
fn each_article_topic_connects_within_its_first_60_lines_and_names_the_go_calls() {
    let mut wrong = Vec::new();
    for (topic, calls) in ARTICLE {
        let source = main_rs(topic);
        match connect_line(&source) {
            Some(line) if line <= 60 => {}
            Some(line) => wrong.push(format!("{topic}: Client::connect at line {line}, past 60")),
            None => wrong.push(format!("{topic}: no Client::connect( in code")),
        }
        // `// Go: cli.Put(..)`, or a numbered step's `// 1. Go: m.Lock(ctx)`.
        let go: Vec<&str> = source
            .lines()
            .filter_map(|l| l.split_once("//").map(|(_, comment)| comment))
            .filter(|comment| comment.contains("Go: "))
            .collect();
        for call in *calls {
            if !go.iter().any(|l| l.contains(call)) {
                wrong.push(format!("{topic}: no `// Go:` comment names {call}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The recipes, each to be defined exactly once, in `crates/recipes/src`, as `<kind> <name>`.
const RECIPES: &[&str] = &[
    "struct KeptLease",
    "enum Renewal",
    "struct Session",
    "struct ResumingWatch",
    "struct QuickBreaks",
    "const MAX_RESPONSE",
    "struct Backoff",
    "fn is_transient",
    "fn with_backoff",
    "fn explain",
    "fn one_line",
    "fn report",
    "struct Shutdown",
    "struct ExitBudget",
];

/// Names that only ever held a copy of a recipe: none may come back, anywhere.
const COPIES: &[&str] = &[
    "fn is_permanent",
    "fn brief",
    "fn backoff",
    "struct Renewer",
    "struct ResumableWatch",
];

/// Where `<kind> <name>` is defined in the workspace's crates (their `src/`), as `crate/file`.
fn definitions(item: &str) -> Vec<String> {
    let mut found = Vec::new();
    for krate in fs::read_dir(repo().join("crates")).expect("read crates/") {
        let krate = krate
            .expect("a crates/ entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        for file in sources(&krate) {
            let defines = read(&file).lines().any(|line| {
                let code = line
                    .trim_start()
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ");
                let code = code.trim_start_matches("async ");
                code.strip_prefix(item)
                    .is_some_and(|rest| rest.starts_with(['(', '<', ' ', ':', ';', '{']))
            });
            if defines {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                found.push(format!("{krate}/{}", name.unwrap_or_default()));
            }
        }
    }
    found
}

#[test]
fn each_recipe_is_defined_once_in_the_recipes_crate() {
    let mut wrong = Vec::new();
    for item in RECIPES {
        let found = definitions(item);
        if found.len() != 1 || !found[0].starts_with("recipes/") {
            wrong.push(format!(
                "{item}: defined in {found:?}, not once in crates/recipes"
            ));
        }
    }
    for item in COPIES {
        let found = definitions(item);
        if !found.is_empty() {
            wrong.push(format!("{item}: a copy of a recipe, in {found:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// README.md's rows under "### The lessons in numbers": (topic, lines, first call line).
fn readme_rows() -> Vec<(String, usize, usize)> {
    let readme = read(&repo().join("README.md"));
    let rows: Vec<(String, usize, usize)> = readme
        .lines()
        .skip_while(|l| l.trim() != "### The lessons in numbers")
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let number = |cell: &str| -> usize {
                let digits: String = cell
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                digits.parse().unwrap_or(0)
            };
            (
                cells[0].trim_matches('`').to_string(),
                number(cells[1]),
                number(cells[3]),
            )
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "README.md has no table under \"### The lessons in numbers\""
    );
    rows
}

#[test]
fn the_readme_table_of_lines_and_first_calls_is_true() {
    let want: Vec<(String, usize, usize)> = topics()
        .into_iter()
        .map(|topic| {
            let source = main_rs(topic);
            let first = connect_line(&source).unwrap_or(0);
            (topic.to_string(), source.lines().count(), first)
        })
        .collect();
    let table: String = want
        .iter()
        .map(|(topic, lines, first)| {
            format!(
                "| `{topic}` | {lines} | {} | [line {first}](crates/{topic}/src/main.rs#L{first}) |\n",
                limit(topic)
            )
        })
        .collect();
    assert_eq!(
        readme_rows(),
        want,
        "README.md's \"### The lessons in numbers\" rows should be:\n{table}"
    );
}
