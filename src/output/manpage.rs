//! Manual pages from the CLI definition: dr(1) and one page per subcommand (dr-check(1),
//! dr-runbook-show(1)...). clap_mangen renders the name, synopsis, description, options and
//! subcommands; the help's closing blocks (checks, formats, examples, exit status) become
//! sections of their own, kept as written (no-fill), so tables and commands stay aligned.

/// `(file name, roff text)` of every page, dr.1 first.
pub fn pages(mut cmd: clap::Command) -> Vec<(String, String)> {
    cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    collect(&cmd, &mut out);
    out
}

fn collect(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
    let man = clap_mangen::Man::new(cmd.clone())
        .date(crate::version::BUILD_DATE)
        .source(format!("dr {}", crate::version::VERSION))
        .manual("dr manual");
    out.push((man.get_filename(), page(&man, cmd)));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

fn page(man: &clap_mangen::Man, cmd: &clap::Command) -> String {
    let mut roff = Vec::new();
    let rendered: std::io::Result<()> = (|| {
        man.render_title(&mut roff)?;
        man.render_name_section(&mut roff)?;
        man.render_synopsis_section(&mut roff)?;
        man.render_description_section(&mut roff)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut roff)?;
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            man.render_subcommands_section(&mut roff)?;
        }
        Ok(())
    })();
    // Writing into a Vec<u8> cannot fail.
    #[allow(clippy::expect_used)]
    rendered.expect("rendering into memory cannot fail");
    let mut text = String::from_utf8_lossy(&roff).into_owned();
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        text.push_str(&closing_sections(&after.to_string()));
    }
    if cmd.get_version().is_some() {
        text.push_str(&format!(".SH VERSION\n{}\n", escape(crate::version::LINE)));
    }
    text
}

/// `Heading:` lines start a section; what follows is kept line for line.
fn closing_sections(help: &str) -> String {
    let mut out = String::new();
    let mut open = false;
    for line in help.lines() {
        let is_heading = !line.starts_with(' ') && line.ends_with(':') && !line.is_empty();
        if is_heading {
            if open {
                out.push_str(".fi\n");
            }
            let title = line.trim_end_matches(':').to_uppercase();
            out.push_str(&format!(".SH \"{}\"\n.nf\n", title.replace('"', "")));
            open = true;
        } else if open {
            out.push_str(&escape(line));
            out.push('\n');
        }
    }
    if open {
        out.push_str(".fi\n");
    }
    out
}

/// Text as roff shows it verbatim: backslashes and hyphens escaped, and a leading `.` or
/// `'` not taken for a request.
fn escape(line: &str) -> String {
    let body = line.replace('\\', "\\e").replace('-', "\\-");
    if body.starts_with('.') || body.starts_with('\'') {
        format!("\\&{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_blocks_become_sections_kept_as_written() {
        let roff = closing_sections(
            "Examples:\n  dr check --strict\n\nExit status:\n  0    ready\n  .x\\y\n",
        );
        assert_eq!(
            roff,
            ".SH \"EXAMPLES\"\n.nf\n  dr check \\-\\-strict\n\n.fi\n.SH \"EXIT STATUS\"\n.nf\n  0    ready\n  .x\\ey\n.fi\n"
        );
        assert_eq!(escape(".starts"), "\\&.starts");
    }
}
