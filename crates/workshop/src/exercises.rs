//! The exercises, in order: what each is about, which lesson to read, and the keys it is asked to write.

use anyhow::{bail, Result};

pub struct Exercise {
    pub number: usize,
    /// The file name without `.rs`, in exercises/ and in solutions/.
    pub file: &'static str,
    pub title: &'static str,
    /// The lesson to read when stuck.
    pub lesson: &'static str,
    /// The keys the exercise writes: the only ones the checker deletes, before and after a run.
    pub keys: &'static [&'static str],
}

pub const EXERCISES: &[Exercise] = &[
    Exercise {
        number: 1,
        file: "01_put_get",
        title: "connect, PUT and GET",
        lesson: "crates/kv/src/main.rs",
        keys: &["/workshop/01/greeting"],
    },
    Exercise {
        number: 2,
        file: "02_old_revision",
        title: "a prefix read at an old revision",
        lesson: "crates/kv/src/main.rs",
        // `size` is written by the checker before the run, so that a prefix read is told from a read of one key.
        keys: &["/workshop/02/color", "/workshop/02/size"],
    },
    Exercise {
        number: 3,
        file: "03_watch",
        title: "a watch that prints each event",
        lesson: "crates/watch/src/main.rs",
        keys: &["/workshop/03/a", "/workshop/03/b"],
    },
    Exercise {
        number: 4,
        file: "04_lease",
        title: "a lease whose key disappears",
        lesson: "crates/lease/src/main.rs",
        keys: &["/workshop/04/temp"],
    },
    Exercise {
        number: 5,
        file: "05_keepalive",
        title: "a keep-alive that stops on Ctrl-C and revokes",
        lesson: "crates/keepalive/src/main.rs (step 3) and renew_when_due in crates/recipes/src/kept_lease.rs",
        keys: &["/workshop/05/alive"],
    },
    Exercise {
        number: 6,
        file: "06_lock",
        title: "a lock held by two tasks in turn",
        lesson: "crates/lock/src/main.rs",
        keys: &[],
    },
    Exercise {
        number: 7,
        file: "07_put_if_absent",
        title: "beyond the article: put-if-absent in one transaction",
        lesson: "crates/txn/src/main.rs",
        keys: &["/workshop/07/leader"],
    },
];

pub fn find(number: usize) -> Result<&'static Exercise> {
    match EXERCISES.iter().find(|e| e.number == number) {
        Some(exercise) => Ok(exercise),
        None => bail!(
            "there is no exercise {number}: they are numbered 1 to {}",
            EXERCISES.len()
        ),
    }
}

impl Exercise {
    /// The binary's name: `ex03`, or `sol03` for the solution.
    pub fn binary(&self, solution: bool) -> String {
        let kind = if solution { "sol" } else { "ex" };
        format!("{kind}{:02}", self.number)
    }

    /// The source, relative to the repository: `crates/workshop/exercises/03_watch.rs`.
    pub fn source(&self, solution: bool) -> String {
        let dir = if solution { "solutions" } else { "exercises" };
        format!("crates/workshop/{dir}/{}.rs", self.file)
    }
}
