//! `callpark plugin check`: which worlds a `.wasm` implements, and how it
//! fares on `check-params` and every conformance case, one line per case.
//! `callpark plugin test`: an integrator's own cases, one line per case.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use callpark_core::Params;
use callpark_policy::cases::CaseFile;
use callpark_policy::{Limits, PluginSource, PolicyRuntime};

/// Parses `key=value` arguments.
pub fn parse_params(args: &[String]) -> anyhow::Result<Params> {
    let mut params: Params = Vec::new();
    for arg in args {
        let (k, v) = arg
            .split_once('=')
            .with_context(|| format!("--params takes key=value, got `{arg}`"))?;
        let k = k.trim();
        if k.is_empty() {
            anyhow::bail!("--params `{arg}` has an empty key");
        }
        callpark_core::lay_params(&mut params, [(k.to_string(), v.to_string())]);
    }
    Ok(params)
}

/// Checks a plugin file under `limits` (the server's defaults, or what a
/// slot would give it) and writes the report. Returns whether it passed.
pub fn run(
    path: &Path,
    params: &Params,
    limits: Limits,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let runtime = PolicyRuntime::new(limits, None)?;
    let report = runtime.check(&PluginSource::new(path.display().to_string(), wasm), params);
    writeln!(out, "plugin {}", report.label)?;
    writeln!(out, "  sha256 {}", report.digest)?;
    if let Some(fatal) = &report.fatal {
        writeln!(out, "  FAIL {fatal}")?;
        writeln!(out, "FAIL: not a usable callpark plugin")?;
        return Ok(false);
    }
    let implemented = report.implemented();
    if implemented.is_empty() {
        writeln!(
            out,
            "  implements: none of the callpark:policy worlds (0.1.0, 0.2.0)"
        )?;
    } else {
        writeln!(out, "  implements: {}", implemented.join(", "))?;
    }
    // check-params and the conformance cases are counted apart: a plugin
    // whose params are refused runs no case, and the summary says so.
    let (mut cases, mut failed, mut params_refused) = (0, 0, 0);
    for world in &report.worlds {
        match &world.implemented {
            Err(why) => writeln!(out, "  {:<17} not implemented ({why})", world.world)?,
            Ok(_) => {
                match &world.params {
                    Some(Ok(())) => writeln!(out, "  {:<17} ok   check-params", world.world)?,
                    Some(Err(why)) => {
                        params_refused += 1;
                        writeln!(out, "  {:<17} FAIL check-params: {why}", world.world)?
                    }
                    None => {}
                }
                for case in &world.cases {
                    cases += 1;
                    match &case.result {
                        Ok(answer) => {
                            writeln!(out, "  {:<17} ok   {} -> {answer}", world.world, case.name)?
                        }
                        Err(why) => {
                            failed += 1;
                            writeln!(out, "  {:<17} FAIL {}: {why}", world.world, case.name)?
                        }
                    }
                }
            }
        }
    }
    let passed = report.passed();
    if passed {
        writeln!(out, "PASS: {cases} cases")?;
    } else if implemented.is_empty() {
        writeln!(out, "FAIL: implements no callpark policy world")?;
    } else {
        let mut why = Vec::new();
        if params_refused > 0 {
            why.push(format!(
                "check-params refused the parameters in {params_refused} world{} (its cases did not run)",
                if params_refused == 1 { "" } else { "s" }
            ));
        }
        if failed > 0 || cases > 0 {
            why.push(format!("{failed} of {cases} conformance cases failed"));
        }
        writeln!(out, "FAIL: {}", why.join("; "))?;
    }
    Ok(passed)
}

/// Runs a case file on a plugin and writes one line per case, then a
/// summary. Returns whether every case passed (and there was one).
pub fn test(
    path: &Path,
    params: &Params,
    limits: Limits,
    cases: &CaseFile,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let runtime = PolicyRuntime::new(limits, None)?;
    let report = runtime.test(
        &PluginSource::new(path.display().to_string(), wasm),
        params,
        cases,
    );
    writeln!(out, "plugin {}", report.label)?;
    if let Some(fatal) = &report.fatal {
        writeln!(out, "FAIL {fatal}")?;
        return Ok(false);
    }
    let (mut total, mut failed, mut refused) = (0, 0, 0);
    for world in &report.worlds {
        if let Some(Err(why)) = &world.params {
            refused += 1;
            writeln!(out, "FAIL {:<17} check-params: {why}", world.world)?;
        }
        for case in &world.cases {
            total += 1;
            match &case.result {
                Ok(answer) => writeln!(out, "ok   {:<17} {} -> {answer}", world.world, case.name)?,
                Err(why) => {
                    failed += 1;
                    writeln!(out, "FAIL {:<17} {}: {why}", world.world, case.name)?
                }
            }
        }
    }
    if refused > 0 {
        writeln!(
            out,
            "FAIL: check-params refused the parameters in {refused} world{} (its cases did not run); {failed} of {total} other cases did not pass",
            if refused == 1 { "" } else { "s" }
        )?;
        return Ok(false);
    }
    if total == 0 {
        writeln!(out, "FAIL: the case file has no cases")?;
        return Ok(false);
    }
    if failed == 0 {
        writeln!(out, "PASS: {total} cases")?;
        Ok(true)
    } else {
        writeln!(out, "FAIL: {failed} of {total} cases did not pass")?;
        Ok(false)
    }
}
