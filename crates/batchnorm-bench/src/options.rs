//! Command-line options. Hand-parsed: the binary should stay small and build offline.

use std::fmt;

pub const USAGE: &str = "\
usage: batchnorm-bench [--shape 32,64,56,56] [--axis 1] [--op train|eval|backward]
                       [--dtype f32|f64|bf16|f16] [--threads 1,2,4,8,16] [--iters 50] [--warmup 5] [--json]

Times one batch-norm call of batchnorm-core per thread count (median of --iters calls into
preallocated outputs) beside a memcpy of the same bytes, and prints effective GB/s:
(bytes of x + bytes of y) / time; backward counts x + dy + dx.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Train,
    Eval,
    Backward,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Train => "train",
            Op::Eval => "eval",
            Op::Backward => "backward",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    Bf16,
    F16,
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub shape: Vec<usize>,
    pub axis: i64,
    pub op: Op,
    pub dtype: Dtype,
    pub threads: Vec<usize>,
    pub iters: usize,
    pub warmup: usize,
    pub json: bool,
}

impl Options {
    /// Parses `args` (without the program name). `Ok(None)` means help was asked for.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>, String> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut options = Options {
            shape: vec![32, 64, 56, 56],
            axis: 1,
            op: Op::Train,
            dtype: Dtype::F32,
            threads: default_threads(cpus),
            iters: 50,
            warmup: 5,
            json: false,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--json" {
                options.json = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--shape" => options.shape = parse_list(&flag, &value)?,
                "--axis" => options.axis = parse_number(&flag, &value)?,
                "--op" => {
                    options.op = match value.as_str() {
                        "train" => Op::Train,
                        "eval" => Op::Eval,
                        "backward" => Op::Backward,
                        _ => return Err(format!("--op must be train, eval or backward, got {value}")),
                    }
                }
                "--dtype" => {
                    options.dtype = match value.as_str() {
                        "f32" => Dtype::F32,
                        "f64" => Dtype::F64,
                        "bf16" => Dtype::Bf16,
                        "f16" => Dtype::F16,
                        _ => return Err(format!("--dtype must be f32, f64, bf16 or f16, got {value}")),
                    }
                }
                "--threads" => options.threads = parse_list(&flag, &value)?,
                "--iters" => options.iters = parse_number(&flag, &value)?,
                "--warmup" => options.warmup = parse_number(&flag, &value)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if options.threads.contains(&0) {
            return Err("--threads must be counts >= 1".into());
        }
        if options.iters == 0 {
            return Err("--iters must be >= 1".into());
        }
        Ok(Some(options))
    }
}

/// Powers of two up to the CPU count, and the CPU count itself.
fn default_threads(cpus: usize) -> Vec<usize> {
    let mut threads: Vec<usize> = (0..).map(|p| 1usize << p).take_while(|&t| t < cpus).collect();
    threads.push(cpus);
    threads
}

fn parse_number<N: std::str::FromStr>(flag: &str, value: &str) -> Result<N, String> {
    value.trim().parse().map_err(|_| format!("{flag} must be a number, got {value}"))
}

fn parse_list(flag: &str, value: &str) -> Result<Vec<usize>, String> {
    let list = value.split(',').map(|v| parse_number(flag, v)).collect::<Result<Vec<usize>, String>>()?;
    if list.is_empty() {
        return Err(format!("{flag} needs at least one value"));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        Options::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn reads_every_option() {
        let o = parse(&[
            "--shape",
            "64,56,56,128",
            "--axis",
            "-1",
            "--op",
            "backward",
            "--dtype",
            "f64",
            "--threads",
            "1,2,16",
            "--iters",
            "7",
            "--warmup",
            "2",
            "--json",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.shape, [64, 56, 56, 128]);
        assert_eq!(o.axis, -1);
        assert_eq!(o.op, Op::Backward);
        assert_eq!(o.dtype, Dtype::F64);
        assert_eq!(o.threads, [1, 2, 16]);
        assert_eq!((o.iters, o.warmup, o.json), (7, 2, true));
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse(&["--op", "fwd"]).is_err());
        assert!(parse(&["--threads", "0,2"]).is_err());
        assert!(parse(&["--shape", "2,x"]).is_err());
        assert!(parse(&["--iters"]).is_err());
        assert!(parse(&["--bogus", "1"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn default_threads_double_up_to_the_cpu_count() {
        assert_eq!(default_threads(1), [1]);
        assert_eq!(default_threads(16), [1, 2, 4, 8, 16]);
        assert_eq!(default_threads(12), [1, 2, 4, 8, 12]);
    }
}
