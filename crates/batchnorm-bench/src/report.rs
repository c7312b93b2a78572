//! The results as a text table or JSON. `bench/torch_scaling.py` prints the same layout,
//! so the two can be read side by side.

use std::fmt::Write;

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ms: f64,
    pub gb_per_s: f64,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub threads: usize,
    pub op: Timing,
    /// A copy of x's bytes on the same number of threads.
    pub memcpy: Timing,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub tool: &'static str,
    pub op: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub axis: i64,
    pub iters: usize,
    pub bytes_moved: usize,
    pub cpus: usize,
    pub single_thread_memcpy: Timing,
    pub rows: Vec<Row>,
}

impl Report {
    /// The 1-thread time that speedups are taken against (the first row when 1 is absent).
    fn base_ms(&self) -> f64 {
        self.rows.iter().find(|r| r.threads == 1).or(self.rows.first()).map_or(f64::NAN, |r| r.op.ms)
    }

    fn shape_text(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        format!("[{}]", dims.join(","))
    }

    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} {} {} axis {} | {:.1} MB moved per call | median of {} | {} CPUs{}{}",
            self.tool,
            self.op,
            self.dtype,
            self.shape_text(),
            self.axis,
            self.bytes_moved as f64 / 1e6,
            self.iters,
            self.cpus,
            cpu_model().map_or(String::new(), |m| format!(" ({m})")),
            load_average().map_or(String::new(), |l| format!(" | load {l:.2}")),
        );
        let _ = writeln!(
            s,
            "memcpy, 1 thread (copy_from_slice): {:.3} ms = {:.1} GB/s",
            self.single_thread_memcpy.ms, self.single_thread_memcpy.gb_per_s
        );
        let _ = writeln!(
            s,
            "{:>7} {:>10} {:>8} {:>12} {:>9} {:>8}",
            "threads", "median ms", "GB/s", "memcpy GB/s", "x memcpy", "speedup"
        );
        let base = self.base_ms();
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:>7} {:>10.3} {:>8.1} {:>12.1} {:>9.2} {:>8.2}",
                r.threads,
                r.op.ms,
                r.op.gb_per_s,
                r.memcpy.gb_per_s,
                r.op.gb_per_s / r.memcpy.gb_per_s,
                base / r.op.ms
            );
        }
        s
    }

    pub fn to_json(&self) -> String {
        let base = self.base_ms();
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"threads\":{},\"ms\":{},\"gbPerS\":{},\"memcpyMs\":{},\"memcpyGbPerS\":{},\
                     \"fractionOfMemcpy\":{},\"speedup\":{}}}",
                    r.threads,
                    number(r.op.ms),
                    number(r.op.gb_per_s),
                    number(r.memcpy.ms),
                    number(r.memcpy.gb_per_s),
                    number(r.op.gb_per_s / r.memcpy.gb_per_s),
                    number(base / r.op.ms)
                )
            })
            .collect();
        format!(
            "{{\"tool\":\"{}\",\"op\":\"{}\",\"dtype\":\"{}\",\"shape\":{},\"axis\":{},\
             \"iters\":{},\"bytesMoved\":{},\"cpus\":{},\"cpuModel\":{},\"loadAverage\":{},\
             \"singleThreadMemcpy\":{{\"ms\":{},\"gbPerS\":{}}},\"rows\":[{}]}}",
            self.tool,
            self.op,
            self.dtype,
            self.shape_text(),
            self.axis,
            self.iters,
            self.bytes_moved,
            self.cpus,
            cpu_model().map_or("null".into(), |m| json_string(&m)),
            load_average().map_or("null".into(), number),
            number(self.single_thread_memcpy.ms),
            number(self.single_thread_memcpy.gb_per_s),
            rows.join(",")
        )
    }
}

/// JSON has no NaN or Infinity: those become null.
fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        "null".into()
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The 1-minute load average on Linux: well above 0 means other work shared the cores.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The CPU's marketing name on Linux, to tell runs on different machines apart.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let t = |ms: f64| Timing { ms, gb_per_s: 10.0 / ms };
        Report {
            tool: "batchnorm-bench",
            op: "train".into(),
            dtype: "f32".into(),
            shape: vec![2, 4],
            axis: 1,
            iters: 3,
            bytes_moved: 64,
            cpus: 2,
            single_thread_memcpy: t(1.0),
            rows: vec![Row { threads: 1, op: t(4.0), memcpy: t(2.0) }, Row { threads: 2, op: t(2.0), memcpy: t(1.0) }],
        }
    }

    #[test]
    fn table_shows_speedup_against_one_thread() {
        let table = report().to_table();
        let last = table.lines().last().unwrap();
        let cells: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(cells, ["2", "2.000", "5.0", "10.0", "0.50", "2.00"]);
    }

    #[test]
    fn json_carries_rows_and_nulls_for_non_finite() {
        let json = report().to_json();
        assert!(json.contains("\"shape\":[2,4]"));
        assert!(json.contains("\"threads\":2,\"ms\":2.000000"));
        assert!(json.contains("\"speedup\":2.000000"));
        assert_eq!(number(f64::NAN), "null");
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
