//! Thread scaling of batchnorm-core without Node: one op on one shape, timed per thread
//! count beside a memcpy of the same bytes. Built for the default target without
//! `target-cpu=native`, so the binary runs as is on any x86-64 Linux with a recent glibc.
//! `bench/torch_scaling.py` prints the same table for PyTorch.

mod options;
mod report;
mod timing;
mod workload;

use batchnorm_core::{set_num_threads, Bf16, Element, Layout, F16};
use rayon::ThreadPoolBuilder;

use options::{Dtype, Options, USAGE};
use report::{Report, Row, Timing};
use timing::{gb_per_s, median_ms, parallel_copy};
use workload::Workload;

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("batchnorm-bench: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let result = match options.dtype {
        Dtype::F32 => measure::<f32>(&options),
        Dtype::F64 => measure::<f64>(&options),
        Dtype::Bf16 => measure::<Bf16>(&options),
        Dtype::F16 => measure::<F16>(&options),
    };
    match result {
        Ok(report) if options.json => println!("{}", report.to_json()),
        Ok(report) => print!("{}", report.to_table()),
        Err(message) => {
            eprintln!("batchnorm-bench: {message}");
            std::process::exit(1);
        }
    }
}

fn measure<T: Element>(options: &Options) -> Result<Report, String> {
    let layout = Layout::from_shape(&options.shape, options.axis).map_err(|e| e.to_string())?;
    let mut workload = Workload::<T>::new(options.op, layout)?;
    let bytes = workload.bytes_moved();
    let mut copy = vec![T::default(); layout.len()];
    let copy_bytes = 2 * std::mem::size_of_val(workload.x());

    let single_copy_ms = median_ms(options.warmup, options.iters, || {
        copy.copy_from_slice(workload.x());
        Ok::<(), String>(())
    })?;
    let mut rows = Vec::with_capacity(options.threads.len());
    for &threads in &options.threads {
        set_num_threads(threads).map_err(|e| e.to_string())?;
        let ms = median_ms(options.warmup, options.iters, || workload.run())?;
        let pool = ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
        let copy_ms = median_ms(options.warmup, options.iters, || {
            parallel_copy(&pool, workload.x(), &mut copy);
            Ok::<(), String>(())
        })?;
        rows.push(Row {
            threads,
            op: Timing { ms, gb_per_s: gb_per_s(bytes, ms) },
            memcpy: Timing { ms: copy_ms, gb_per_s: gb_per_s(copy_bytes, copy_ms) },
        });
    }
    Ok(Report {
        tool: "batchnorm-bench",
        op: options.op.to_string(),
        dtype: options.dtype.to_string(),
        shape: options.shape.clone(),
        axis: options.axis,
        iters: options.iters,
        bytes_moved: bytes,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        single_thread_memcpy: Timing { ms: single_copy_ms, gb_per_s: gb_per_s(copy_bytes, single_copy_ms) },
        rows,
    })
}
