//! docs/faults.md is kept true: every scenario in its two tables names the tests that prove it, and each
//! named test exists. A row whose test was renamed or deleted fails here.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The rows of the table under the heading `heading`, as lists of cells (header and separator skipped).
fn table_rows(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| l.trim() != heading).skip(1);
    let rows: Vec<Vec<String>> = lines
        .by_ref()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    rows.into_iter().skip(2).collect()
}

/// The `crates/<crate>/tests/<file>.rs::<name>` references in one cell.
fn test_refs(cell: &str) -> Vec<(String, String)> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|r| r.split_once("::"))
        .map(|(file, name)| (file.to_string(), name.to_string()))
        .collect()
}

/// Checks every row of a table: at least one test reference, each naming an existing `fn`.
fn check_table(doc: &str, heading: &str, min_rows: usize) -> usize {
    let rows = table_rows(doc, heading);
    assert!(
        rows.len() >= min_rows,
        "docs/faults.md: expected at least {min_rows} rows under {heading:?}, found {}",
        rows.len()
    );
    let mut checked = 0;
    for row in &rows {
        let last = row.last().expect("a table row has cells");
        let refs = test_refs(last);
        assert!(
            !refs.is_empty(),
            "docs/faults.md: the scenario {:?} names no test (`crates/<crate>/tests/<file>.rs::<fn>`)",
            row[0]
        );
        for (file, name) in refs {
            let path = repo().join(&file);
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("docs/faults.md names {file}, which cannot be read: {e}")
            });
            assert!(
                source.contains(&format!("fn {name}(")),
                "docs/faults.md: the scenario {:?} names the test {file}::{name}, which does not exist",
                row[0]
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_fault_scenario_names_tests_that_exist() {
    let doc =
        std::fs::read_to_string(repo().join("docs/faults.md")).expect("docs/faults.md exists");
    let faults = check_table(&doc, "## Faults", 15);
    let inputs = check_table(&doc, "## Bad input", 10);
    assert!(faults > 0 && inputs > 0);
}

#[test]
fn a_row_without_a_test_or_with_a_missing_test_is_caught() {
    let doc = "## Faults\n\n| fault | test |\n| --- | --- |\n| ok | `crates/test-etcd/tests/faults_doc.rs::repo` |\n";
    assert_eq!(check_table(doc, "## Faults", 1), 1);
    for bad in [
        "## Faults\n\n| fault | test |\n| --- | --- |\n| none named | (to do) |\n",
        "## Faults\n\n| fault | test |\n| --- | --- |\n| renamed | `crates/test-etcd/tests/faults_doc.rs::no_such_test` |\n",
    ] {
        let caught = std::panic::catch_unwind(|| check_table(bad, "## Faults", 1));
        assert!(caught.is_err(), "not caught: {bad}");
    }
}
