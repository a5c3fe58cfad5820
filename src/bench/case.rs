//! One benchmark case: a kernel on fixed inputs, runnable on both executors.
//!
//! A case owns its tensors (seeded host data, in binding order), a closure that runs the
//! CPU twin over them, and a closure that builds the GPU launcher's dispatches over device
//! copies of the same tensors. The tensors marked with a [`Check`] are the kernel's outputs:
//! after one run of each side from the same initial data they are compared.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::options::Family;
use crate::cpu::aligned::AlignedBuf;
use crate::error::Result;
use crate::gpu::{Dispatch, GpuContext};

/// Host data of one tensor.
#[derive(Clone, Debug)]
pub enum Data {
    /// On 64-byte boundaries, as the CPU executor holds its tensors.
    F32(AlignedBuf<f32>),
    U32(Vec<u32>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::U32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Data::F32(v) => bytemuck::cast_slice(&v[..]),
            Data::U32(v) => bytemuck::cast_slice(v),
        }
    }
}

/// How a tensor's GPU result is compared with the CPU twin's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Check {
    /// An input only: not compared.
    Input,
    /// Floats: max |gpu − cpu| / max |cpu| must not exceed the tolerance.
    Close(f64),
    /// Integers (arg-max indices, counts): every element equal.
    Exact,
    /// Statistics records (`RawStats`): counts and histogram equal, moments close.
    Stats(f64),
}

/// One tensor of a case.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: &'static str,
    pub data: Data,
    pub check: Check,
}

impl Tensor {
    /// Seeded values uniform in [lo, hi).
    pub fn random(name: &'static str, len: usize, seed: u64, lo: f32, hi: f32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Tensor {
            name,
            data: Data::F32(AlignedBuf::from_slice(
                &(0..len)
                    .map(|_| rng.random_range(lo..hi))
                    .collect::<Vec<f32>>(),
            )),
            check: Check::Input,
        }
    }

    /// `len` copies of `v`.
    pub fn filled(name: &'static str, len: usize, v: f32) -> Self {
        let mut data = AlignedBuf::zeroed(len);
        data.fill(v);
        Tensor {
            name,
            data: Data::F32(data),
            check: Check::Input,
        }
    }

    /// Integers below `bound`, seeded.
    pub fn indices(name: &'static str, len: usize, seed: u64, bound: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Tensor {
            name,
            data: Data::U32((0..len).map(|_| rng.random_range(0..bound)).collect()),
            check: Check::Input,
        }
    }

    /// An output of `len` floats, compared within `tol` (see [`Check::Close`]).
    pub fn output(name: &'static str, len: usize, tol: f64) -> Self {
        Tensor {
            name,
            data: Data::F32(AlignedBuf::zeroed(len)),
            check: Check::Close(tol),
        }
    }

    /// An output of `len` integers, compared exactly.
    pub fn output_u32(name: &'static str, len: usize) -> Self {
        Tensor {
            name,
            data: Data::U32(vec![0; len]),
            check: Check::Exact,
        }
    }

    /// The same tensor, compared as `check` (an input the kernel also writes).
    pub fn checked(mut self, check: Check) -> Self {
        self.check = check;
        self
    }
}

/// The tensors as the CPU closure sees them. Outputs are taken out, written and put back,
/// so a closure holds inputs and outputs at once without copying either.
pub struct Slots(pub Vec<Data>);

impl Slots {
    pub fn f(&self, i: usize) -> &[f32] {
        match &self.0[i] {
            Data::F32(v) => v,
            Data::U32(_) => panic!("bench tensor {i} holds integers, read as floats"),
        }
    }

    pub fn u(&self, i: usize) -> &[u32] {
        match &self.0[i] {
            Data::U32(v) => v,
            Data::F32(_) => panic!("bench tensor {i} holds floats, read as integers"),
        }
    }

    pub fn take_f(&mut self, i: usize) -> AlignedBuf<f32> {
        match std::mem::replace(&mut self.0[i], Data::F32(AlignedBuf::default())) {
            Data::F32(v) => v,
            Data::U32(_) => panic!("bench tensor {i} holds integers, taken as floats"),
        }
    }

    pub fn take_u(&mut self, i: usize) -> Vec<u32> {
        match std::mem::replace(&mut self.0[i], Data::U32(Vec::new())) {
            Data::U32(v) => v,
            Data::F32(_) => panic!("bench tensor {i} holds floats, taken as integers"),
        }
    }

    pub fn put_f(&mut self, i: usize, v: AlignedBuf<f32>) {
        self.0[i] = Data::F32(v);
    }

    pub fn put_u(&mut self, i: usize, v: Vec<u32>) {
        self.0[i] = Data::U32(v);
    }
}

/// What a run of the kernel does, for its throughput.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Floating-point operations (2 per multiply-add): compute-bound kernels, GFLOP/s.
    Flops(f64),
    /// Bytes read plus bytes written, each tensor counted once per pass over it:
    /// memory-bound kernels, GB/s.
    Bytes(f64),
}

impl Work {
    /// Bytes of `elems` 4-byte elements.
    pub fn elems(elems: usize) -> Self {
        Work::Bytes(elems as f64 * 4.0)
    }
}

/// Runs the CPU twin over the tensors.
pub type CpuRun = Box<dyn FnMut(&mut Slots) -> Result<()>>;
/// Builds the GPU dispatches over the device copies of the tensors (in tensor order).
pub type GpuBuild = Box<dyn Fn(&GpuContext, &[wgpu::Buffer]) -> Result<Vec<Dispatch>>>;

/// One kernel on one shape.
pub struct Case {
    /// The family `--op` selects by (matmul, conv2d, …).
    pub family: Family,
    /// The kernel (matmul_nn, conv2d_backward_input, …), also matched by `--op`.
    pub name: String,
    /// The shape, as a user reads it.
    pub shape: String,
    pub work: Work,
    pub tensors: Vec<Tensor>,
    pub cpu: CpuRun,
    pub gpu: GpuBuild,
}

/// A case not built yet: `--op` filters by its name before its inputs are allocated.
pub struct Pending {
    pub family: Family,
    pub name: String,
    pub build: Box<dyn FnOnce() -> Case>,
}

impl Pending {
    pub fn new(
        family: Family,
        name: impl Into<String>,
        build: impl FnOnce() -> Case + 'static,
    ) -> Self {
        Pending {
            family,
            name: name.into(),
            build: Box::new(build),
        }
    }
}
