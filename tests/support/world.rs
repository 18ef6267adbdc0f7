//! More of what a test world does: destinations named the way an operator names them (a
//! URL with a password goes into an environment variable for `--into-env`, never onto a
//! command line), and what a run left in its temporary directory.

use std::path::PathBuf;

use super::World;

impl World {
    /// Sets (or replaces) an environment variable of every later `dr` run.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// What runs left in `$TMPDIR`: staging directories, passfiles, sandboxes. The
    /// directory where dr records what it holds (`dr-runs`) stays, and counts only when it
    /// still records something.
    pub fn tmp_leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                !(p.file_name().is_some_and(|n| n == "dr-runs")
                    && std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none()))
            })
            .collect()
    }
}
