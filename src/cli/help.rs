//! Help texts of commands whose exit status differs from the shared table.

/// `dr status`: a scorecard read from storage; its exit status follows the worst target.
pub(super) const STATUS_HELP: &str = "\
Examples:
  dr status
  dr status --target 'shop/*' --format json \\
      | jq '.targets[] | select(.status == \"fail\")'

Exit status:
  0    no target fails (warnings, such as no drill or a failed one, still exit 0)
  1    at least one target fails: no backup, nothing restorable within the RPO, or
       its last backup run failed
  2    usage or configuration error (an unknown --target); nothing was changed
  130  interrupted (Ctrl-C, SIGTERM)";
