//! The communicator behind `batchnorm/mpi`: MPI_COMM_WORLD of the system's MPI (through
//! rsmpi), exposed to Node as a handful of collectives on typed arrays. No batch-norm code:
//! the TypeScript wrapper (src/mpi/) validates arguments, orders calls and shapes the API.
//!
//! Every collective first all-reduces a small header (operation, length, dtype, root, and
//! whether this rank's arguments were invalid) with MPI_MAX over the values and their
//! negations, so each rank learns the maximum and minimum of every field. When they differ
//! (or some rank was invalid), every rank returns the same error, decoded from the same
//! reduced header, instead of running a mismatched collective (a hang, garbage or a crash).
//!
//! Threading: MPI is initialized with MPI_THREAD_SERIALIZED. The Async forms run on a libuv
//! worker thread, the sync forms on the JS thread, so MPI is called from several threads, but
//! never from two at once: the TypeScript side runs one collective at a time per process, and
//! every call here also holds the `STATE` lock while it is inside MPI.

use std::sync::{Mutex, MutexGuard};

use mpi::collective::SystemOperation;
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use napi::bindgen_prelude::{AsyncTask, Float32Array, Float64Array};
use napi::{Env, Error, Result, Status, Task};
use napi_derive::napi;

/// Bumped whenever the calling convention between src/mpi/ and this addon changes.
const BINDING_INTERFACE: u32 = 1;

enum State {
    Uninitialized,
    Live(Universe, Threading),
    Finalized,
}

static STATE: Mutex<State> = Mutex::new(State::Uninitialized);

fn lock() -> MutexGuard<'static, State> {
    // A panic while holding the lock cannot leave MPI half-called in a way a later call could
    // repair; go on with the state as it is.
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn failure(message: String) -> Error {
    Error::new(Status::GenericFailure, message)
}

fn thread_level_name(level: Threading) -> &'static str {
    match level {
        Threading::Single => "single",
        Threading::Funneled => "funneled",
        Threading::Serialized => "serialized",
        Threading::Multiple => "multiple",
    }
}

#[napi]
pub fn binding_interface() -> u32 {
    BINDING_INTERFACE
}

#[napi(object)]
pub struct WorldInfo {
    pub rank: i32,
    pub size: i32,
    /// The thread level MPI provided: "single", "funneled", "serialized" or "multiple".
    pub thread_level: String,
    pub library_version: String,
    pub processor_name: String,
}

/// Initializes MPI (once per process, MPI_THREAD_SERIALIZED requested) and describes
/// MPI_COMM_WORLD. Later calls describe it again without initializing.
#[napi]
pub fn init() -> Result<WorldInfo> {
    let mut state = lock();
    if matches!(*state, State::Uninitialized) {
        let (universe, provided) = mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| {
            failure(
                "MPI was already initialized in this process by other code; batchnorm/mpi must initialize it".into(),
            )
        })?;
        *state = State::Live(universe, provided);
    }
    match &*state {
        State::Live(universe, provided) => {
            let world = universe.world();
            Ok(WorldInfo {
                rank: world.rank(),
                size: world.size(),
                thread_level: thread_level_name(*provided).into(),
                library_version: mpi::environment::library_version().unwrap_or_default().trim().into(),
                processor_name: mpi::environment::processor_name().unwrap_or_default(),
            })
        }
        State::Finalized => Err(failure("MPI has been finalized in this process; it cannot be used again".into())),
        State::Uninitialized => unreachable!("initialized above"),
    }
}

/// MPI_Finalize, unless a collective is running on another thread right now (then it is
/// skipped: finalizing under it would be undefined behaviour). Returns whether it finalized.
#[napi]
pub fn finalize() -> bool {
    let Ok(mut state) = STATE.try_lock() else {
        return false;
    };
    if matches!(*state, State::Live(..)) {
        *state = State::Finalized; // drops the Universe: MPI_Finalize
        true
    } else {
        false
    }
}

/// MPI_Abort on MPI_COMM_WORLD: the MPI runtime ends every rank of the job with `code`.
/// Used when a rank exits with a non-zero code, so the others do not wait for it forever.
#[napi]
pub fn abort(code: i32) {
    // A held lock means a collective is running on another thread (MPI is live then): abort
    // anyway, not under the lock, so a collective stuck waiting for a peer cannot stop it.
    let live = match STATE.try_lock() {
        Ok(state) => matches!(*state, State::Live(..)),
        Err(_) => true,
    };
    if live {
        SimpleCommunicator::world().abort(code)
    }
}

/// The collective operations, as coded in the header.
const ALL_REDUCE: i64 = 1;
const BROADCAST: i64 = 2;
const BARRIER: i64 = 3;

const FLOAT32: i64 = 1;
const FLOAT64: i64 = 2;

fn op_name(op: i64) -> &'static str {
    match op {
        ALL_REDUCE => "allReduce",
        BROADCAST => "broadcast",
        BARRIER => "barrier",
        _ => "an unknown operation",
    }
}

fn dtype_name(dtype: i64) -> &'static str {
    match dtype {
        FLOAT32 => "Float32Array",
        FLOAT64 => "Float64Array",
        _ => "no buffer",
    }
}

/// The buffer of one call: at most one of the two is given.
enum Data {
    None,
    F32(Float32Array),
    F64(Float64Array),
}

impl Data {
    fn from_args(f32: Option<Float32Array>, f64: Option<Float64Array>) -> Result<Data> {
        match (f32, f64) {
            (None, None) => Ok(Data::None),
            (Some(a), None) => Ok(Data::F32(a)),
            (None, Some(a)) => Ok(Data::F64(a)),
            (Some(_), Some(_)) => Err(Error::new(Status::InvalidArg, "pass one buffer, not two")),
        }
    }

    fn len_and_dtype(&self) -> (i64, i64) {
        match self {
            Data::None => (0, 0),
            Data::F32(a) => (a.len() as i64, FLOAT32),
            Data::F64(a) => (a.len() as i64, FLOAT64),
        }
    }
}

/// One collective call: what the header carries, and the buffer.
pub struct Job {
    op: i64,
    /// This rank's arguments failed validation (the wrapper throws its own error afterwards):
    /// it still takes part in the header, so the other ranks fail too instead of waiting.
    invalid: bool,
    root: i64,
    data: Data,
}

/// Header fields, in order.
const FIELDS: usize = 5;
const F_OP: usize = 0;
const F_LEN: usize = 1;
const F_DTYPE: usize = 2;
const F_ROOT: usize = 3;
const F_INVALID: usize = 4;

/// At most this many elements per MPI call (MPI counts are C ints).
const CHUNK: usize = 1 << 24;

impl Job {
    fn run(&mut self) -> Result<()> {
        let state = lock();
        let State::Live(universe, _) = &*state else {
            return Err(failure(format!(
                "batchnorm/mpi: {}: MPI is not initialized (call world() first) or already finalized",
                op_name(self.op)
            )));
        };
        let world = universe.world();
        self.agree(&world)?;
        // SAFETY (as_mut): the typed array is this call's argument (sync) or held by the task's
        // reference until it settles (Async); nothing else in the addon touches it meanwhile.
        // JS code writing the same buffer while an Async call runs is the caller's data race,
        // as with every typed array handed to a worker (documented in docs/mpi.md).
        match (self.op, &mut self.data) {
            (BARRIER, _) => world.barrier(),
            (ALL_REDUCE, Data::F32(a)) => all_reduce(&world, unsafe { a.as_mut() }),
            (ALL_REDUCE, Data::F64(a)) => all_reduce(&world, unsafe { a.as_mut() }),
            (BROADCAST, Data::F32(a)) => broadcast(&world, unsafe { a.as_mut() }, self.root),
            (BROADCAST, Data::F64(a)) => broadcast(&world, unsafe { a.as_mut() }, self.root),
            _ => return Err(failure(format!("batchnorm/mpi: {}: no buffer given", op_name(self.op)))),
        }
        Ok(())
    }

    /// All-reduces the header and fails, identically on every rank, unless every rank called
    /// the same operation with the same length, dtype and root and valid arguments.
    fn agree(&self, world: &SimpleCommunicator) -> Result<()> {
        let (len, dtype) = self.data.len_and_dtype();
        let mut local = [0i64; FIELDS];
        local[F_OP] = self.op;
        local[F_LEN] = len;
        local[F_DTYPE] = dtype;
        local[F_ROOT] = self.root;
        local[F_INVALID] = if self.invalid { i64::from(world.rank()) } else { -1 };
        let mut send = [0i64; 2 * FIELDS];
        for (i, v) in local.iter().enumerate() {
            send[i] = *v;
            send[FIELDS + i] = -*v;
        }
        let mut reduced = [0i64; 2 * FIELDS];
        world.all_reduce_into(&send[..], &mut reduced[..], SystemOperation::max());
        let max = |f: usize| reduced[f];
        let min = |f: usize| -reduced[FIELDS + f];
        let name = op_name(self.op);
        if max(F_OP) != min(F_OP) {
            return Err(failure(format!(
                "batchnorm/mpi: the ranks called different collectives at this step ({} on some, {} on others); every rank must call the same ones in the same order",
                op_name(min(F_OP)),
                op_name(max(F_OP))
            )));
        }
        if max(F_INVALID) >= 0 {
            return Err(failure(format!(
                "batchnorm/mpi: {name}: rank {} called it with an invalid argument (that rank throws the reason); nothing was communicated",
                max(F_INVALID)
            )));
        }
        if max(F_DTYPE) != min(F_DTYPE) {
            return Err(failure(format!(
                "batchnorm/mpi: {name}: the buffers' dtypes differ between ranks ({} on some, {} on others); nothing was communicated",
                dtype_name(min(F_DTYPE)),
                dtype_name(max(F_DTYPE))
            )));
        }
        if max(F_LEN) != min(F_LEN) {
            return Err(failure(format!(
                "batchnorm/mpi: {name}: the buffers' lengths differ between ranks ({} to {} elements); nothing was communicated",
                min(F_LEN),
                max(F_LEN)
            )));
        }
        if max(F_ROOT) != min(F_ROOT) {
            return Err(failure(format!(
                "batchnorm/mpi: {name}: the roots differ between ranks ({} to {}); nothing was communicated",
                min(F_ROOT),
                max(F_ROOT)
            )));
        }
        Ok(())
    }
}

/// In-place elementwise MPI_SUM over every rank. MPI_IN_PLACE has no portable binding in
/// rsmpi, so each chunk is copied out first and reduced back into the buffer.
fn all_reduce<T: Equivalence + Copy>(world: &SimpleCommunicator, buffer: &mut [T]) {
    let mut scratch: Vec<T> = Vec::with_capacity(buffer.len().min(CHUNK));
    for chunk in buffer.chunks_mut(CHUNK) {
        scratch.clear();
        scratch.extend_from_slice(chunk);
        world.all_reduce_into(&scratch[..], chunk, SystemOperation::sum());
    }
}

fn broadcast<T: Equivalence>(world: &SimpleCommunicator, buffer: &mut [T], root: i64) {
    // The wrapper checked 0 <= root < size, and the header that every rank passed the same.
    let process = world.process_at_rank(root as i32);
    for chunk in buffer.chunks_mut(CHUNK) {
        process.broadcast_into(chunk);
    }
}

impl Task for Job {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> Result<()> {
        self.run()
    }
    fn resolve(&mut self, _env: Env, _output: ()) -> Result<()> {
        Ok(())
    }
}

/// One collective on the JS thread. `op`: 1 allReduce, 2 broadcast, 3 barrier; `invalid`:
/// this rank's arguments failed validation (only the header is exchanged, and it fails).
#[napi]
pub fn collective(
    op: u32,
    invalid: bool,
    root: i64,
    f32: Option<Float32Array>,
    f64: Option<Float64Array>,
) -> Result<()> {
    Job { op: i64::from(op), invalid, root, data: Data::from_args(f32, f64)? }.run()
}

/// The same on a libuv worker thread; the task holds a reference to the buffer until it settles.
#[napi]
pub fn collective_async(
    op: u32,
    invalid: bool,
    root: i64,
    f32: Option<Float32Array>,
    f64: Option<Float64Array>,
) -> Result<AsyncTask<Job>> {
    Ok(AsyncTask::new(Job { op: i64::from(op), invalid, root, data: Data::from_args(f32, f64)? }))
}
