//! Faster CPU kernels for the three operators tract 0.23.9 runs slowly in
//! our models, swapped into its graphs before they are optimised.
//!
//! In: a tract graph (ONNX builders, then a typed and decluttered model).
//! Out: the same graph, whose max pools, PReLUs and last-axis softmaxes run
//! here instead. Profiled with `tract … dump --profile` on this project's
//! models (AMD EPYC, one thread): max pooling took 28% of fernet-w16 and 33%
//! of MTCNN's O-Net (a 2×2, stride-2 pool on 16×48×48 cost 120 µs, 13 ns per
//! output, where a ReLU over four times as many values costs 11 µs); ONNX
//! `PRelu`, which tract expands into a comparison, a multiplication and a
//! select, took 30% of O-Net and of P-Net; P-Net's softmax over its two
//! classes took 12–16%.
//!
//! - [`PlaneMaxPool`] and [`ChannelPrelu`] give exactly tract's values (same
//!   taps in the same order, same comparison): a test checks bit equality.
//! - [`LastAxisSoftmax`] uses `f32::exp` where tract uses its own
//!   approximation: the values agree within 1e-6.
//!
//! Only the CPU target uses them: on the GPU they would pull nodes off it.
//!
//! Also here: [`clear_upper_vector_state`], which the tract session calls
//! after every run and each kernel at its start, because tract's AVX-512
//! kernels leave the vector registers in a state that slows every SSE
//! instruction after them ~2.4× on the machine measured.

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::cnn::MaxPool;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};
use tract_onnx::tract_hir::infer::{
    check_input_arity, check_output_arity, InferenceResult, Solver, TensorProxy,
};
use tract_onnx::tract_hir::internal::{expand, Expansion, InferenceOp};

/// `Op` and `TypedOp` for a kernel of ours whose output is typed and shaped
/// as its first input.
macro_rules! elementwise_op {
    ($op:ident) => {
        impl Op for $op {
            fn name(&self) -> StaticName {
                stringify!($op).into()
            }

            op_as_typed_op!();
        }

        impl TypedOp for $op {
            fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                Ok(tvec!(inputs[0].without_value()))
            }

            as_op!();
        }
    };
}

/// Registers [`ChannelPrelu`] as the builder of ONNX `PRelu`.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("PRelu", prelu_builder);
}

fn prelu_builder(
    _ctx: &tract_onnx::model::ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(PreluExpansion), vec![]))
}

/// Replaces the max pools and softmaxes of a typed model (concrete shapes)
/// that [`PlaneMaxPool`] and [`LastAxisSoftmax`] cover; returns how many.
pub fn swap(model: &mut TypedModel) -> TractResult<usize> {
    let mut swapped = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let op: Option<Box<dyn TypedOp>> = if let Some(pool) = node.op_as::<MaxPool>() {
            PlaneMaxPool::plan(model, node, pool)?.map(|op| Box::new(op) as _)
        } else if let Some(softmax) = node.op_as::<Softmax>() {
            LastAxisSoftmax::plan(model, node, softmax)?.map(|op| Box::new(op) as _)
        } else {
            None
        };
        if let Some(op) = op {
            let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
            patch.apply(model)?;
            swapped += 1;
        }
    }
    if swapped > 0 {
        model.compact()?;
    }
    Ok(swapped)
}

/// Clears the upper halves of the vector registers (`vzeroupper`).
///
/// tract's hand-written AVX and AVX-512 kernels return with them dirty, and
/// until they are cleared every SSE instruction after them (all the Rust
/// code built for baseline x86-64: these kernels, tract's own generic ops,
/// fer-edge's alignment and resampling) pays for a merge with the stale
/// upper state. Measured on an AMD EPYC: O-Net's first max pool 113 µs after
/// a tract matrix product, 47 µs after this. Where the CPU has no AVX
/// nothing can have dirtied them, and nothing is done.
#[inline]
pub fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: `vzeroupper` needs AVX, which the CPU has (checked above).
        unsafe { std::arch::x86_64::_mm256_zeroupper() }
    }
}

/// A 2-D max pool over channel-first `f32` planes (`…×H×W`, contiguous),
/// without dilation, with the padding resolved for one input shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlaneMaxPool {
    input: TVec<usize>,
    output: TVec<usize>,
    kernel: [usize; 2],
    strides: [usize; 2],
    pad_before: [usize; 2],
}

impl PlaneMaxPool {
    fn plan(model: &TypedModel, node: &TypedNode, pool: &MaxPool) -> TractResult<Option<Self>> {
        let spec = &pool.pool_spec;
        let fact = model.outlet_fact(node.inputs[0])?;
        let out_fact = model.outlet_fact(OutletId::new(node.id, 0))?;
        let (Some(input), Some(output)) = (fact.shape.as_concrete(), out_fact.shape.as_concrete())
        else {
            return Ok(None);
        };
        let dilated = spec
            .dilations
            .as_ref()
            .is_some_and(|d| d.iter().any(|&x| x != 1));
        if pool.with_index_outputs.is_some()
            || fact.datum_type != f32::datum_type()
            || spec.data_format.c_is_last()
            || spec.kernel_shape.len() != 2
            || input.len() < 3
            || dilated
        {
            return Ok(None);
        }
        let hw = &input[input.len() - 2..];
        let strides = spec.strides.clone().unwrap_or_else(|| tvec![1, 1]);
        let padding = spec
            .padding
            .compute(hw, &spec.kernel_shape, &[1, 1], &strides);
        let op = PlaneMaxPool {
            input: input.into(),
            output: output.into(),
            kernel: [spec.kernel_shape[0], spec.kernel_shape[1]],
            strides: [strides[0], strides[1]],
            pad_before: [padding[0].pad_before, padding[1].pad_before],
        };
        // The output planes must be what the padding computes.
        let o = &op.output;
        if o[..o.len() - 2] != op.input[..op.input.len() - 2]
            || o[o.len() - 2] != padding[0].convoluted
            || o[o.len() - 1] != padding[1].convoluted
        {
            return Ok(None);
        }
        Ok(Some(op))
    }

    /// Pools `input` (planes of `h×w`) into `output` (planes of `oh×ow`).
    /// Each output is its in-bounds taps folded in row-major window order
    /// with `if max < v { v }` from `f32::MIN`, as tract computes it.
    fn run(&self, input: &[f32], output: &mut [f32]) {
        let r = self.input.len();
        let (h, w) = (self.input[r - 2], self.input[r - 1]);
        let (oh, ow) = (self.output[r - 2], self.output[r - 1]);
        let ([kh, kw], [sh, sw], [pt, pl]) = (self.kernel, self.strides, self.pad_before);
        // The common 2×2, stride-2 pool, every window inside the plane: four
        // taps per output, read pairwise (the same taps in the same order).
        let whole = 2 * oh <= h && 2 * ow <= w;
        if self.kernel == [2, 2] && self.strides == [2, 2] && self.pad_before == [0, 0] && whole {
            for (plane, out) in input
                .chunks_exact(h * w)
                .zip(output.chunks_exact_mut(oh * ow))
            {
                for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
                    let r0 = &plane[2 * oy * w..][..2 * ow];
                    let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
                    for ((o, a), b) in row
                        .iter_mut()
                        .zip(r0.chunks_exact(2))
                        .zip(r1.chunks_exact(2))
                    {
                        *o = [a[0], a[1], b[0], b[1]].into_iter().fold(f32::MIN, larger);
                    }
                }
            }
            return;
        }
        // Any other pool in two passes: across each input row, then down the
        // rows under each output row. Both keep the first of equal maxima in
        // window order, so the value (and the sign of a zero) is the one the
        // row-major fold picks.
        // For each kernel column, the outputs whose tap lands inside the row.
        let spans: TVec<(usize, usize, usize)> = (0..kw)
            .filter_map(|kx| {
                let lo = pl.saturating_sub(kx).div_ceil(sw);
                let hi = ((w + pl).checked_sub(kx + 1)? / sw + 1).min(ow);
                (lo < hi).then_some((kx, lo, hi))
            })
            .collect();
        let mut across = vec![f32::MIN; h * ow];
        for (plane, out) in input
            .chunks_exact(h * w)
            .zip(output.chunks_exact_mut(oh * ow))
        {
            for (irow, arow) in plane.chunks_exact(w).zip(across.chunks_exact_mut(ow)) {
                arow.fill(f32::MIN);
                for &(kx, lo, hi) in &spans {
                    let first = lo * sw + kx - pl;
                    // (`chunks` rather than `step_by`: a plain strided loop.)
                    for (o, taps) in arow[lo..hi].iter_mut().zip(irow[first..].chunks(sw)) {
                        *o = larger(*o, taps[0]);
                    }
                }
            }
            for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
                row.fill(f32::MIN);
                for ky in 0..kh {
                    let Some(iy) = (oy * sh + ky).checked_sub(pt).filter(|&y| y < h) else {
                        continue;
                    };
                    for (o, &v) in row.iter_mut().zip(&across[iy * ow..][..ow]) {
                        *o = larger(*o, v);
                    }
                }
            }
        }
    }
}

/// tract's max fold step: `v` only when strictly larger (NaN never is).
#[inline(always)]
fn larger(m: f32, v: f32) -> f32 {
    if m < v {
        v
    } else {
        m
    }
}

impl Op for PlaneMaxPool {
    fn name(&self) -> StaticName {
        "PlaneMaxPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "kernel {:?} strides {:?} pad before {:?}",
            self.kernel, self.strides, self.pad_before
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for PlaneMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        clear_upper_vector_state();
        let input = args_1!(inputs);
        let input = input.to_plain_array_view::<f32>()?;
        let input = input
            .as_slice()
            .context("max pool input is not contiguous")?;
        let mut output = Tensor::zero::<f32>(&self.output)?;
        let mut plain = output.try_as_plain_ram_mut()?;
        self.run(input, plain.as_slice_mut::<f32>()?);
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for PlaneMaxPool {
    fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(&*self.output)))
    }

    as_op!();
}

/// Softmax over the last, contiguous axis of an `f32` tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LastAxisSoftmax {
    len: usize,
}

impl LastAxisSoftmax {
    fn plan(model: &TypedModel, node: &TypedNode, op: &Softmax) -> TractResult<Option<Self>> {
        let fact = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = fact.shape.as_concrete() else {
            return Ok(None);
        };
        let last = shape.len().wrapping_sub(1);
        if fact.datum_type != f32::datum_type()
            || op.quant_output_dt.is_some()
            || op.kind != SoftmaxKind::Softmax
            || op.axes[..] != [last]
        {
            return Ok(None);
        }
        Ok(Some(LastAxisSoftmax { len: shape[last] }))
    }

    fn run(values: &mut [f32], len: usize) {
        for row in values.chunks_exact_mut(len) {
            let max = row.iter().fold(f32::MIN, |m, &v| if m < v { v } else { m });
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    }
}

impl EvalOp for LastAxisSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        clear_upper_vector_state();
        let mut tensor = args_1!(inputs).into_tensor();
        let mut plain = tensor.try_as_plain_ram_mut()?;
        Self::run(plain.as_slice_mut::<f32>()?, self.len.max(1));
        Ok(tvec!(tensor.into_tvalue()))
    }
}

elementwise_op!(LastAxisSoftmax);

/// ONNX `PRelu` as the inference stage sees it: two inputs, the output
/// shaped and typed as the first.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct PreluExpansion;

impl Expansion for PreluExpansion {
    fn name(&self) -> StaticName {
        "ChannelPrelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let mut slope = inputs[1];
        if model.outlet_fact(slope)?.datum_type != dt {
            slope = model.wire_node(format!("{name}.cast"), cast(dt), &[slope])?[0];
        }
        model.wire_node(name, ChannelPrelu, &[inputs[0], slope])
    }
}

/// `x > 0 ? x : slope · x`, the slope broadcast numpy-style (ONNX `PRelu`);
/// a slope that varies along one axis only (per channel) runs as contiguous
/// runs of one slope value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelPrelu;

impl ChannelPrelu {
    /// Computes in place in `x`'s buffer.
    fn run_t<T: Datum + Copy + PartialOrd + std::ops::Mul<Output = T> + tract_num_traits::Zero>(
        x: Tensor,
        slope: &Tensor,
    ) -> TractResult<Tensor> {
        let xs: TVec<usize> = x.shape().into();
        let xs = &xs[..];
        let mut ss: TVec<usize> = tvec![1; xs.len().saturating_sub(slope.rank())];
        ss.extend(slope.shape().iter().copied());
        let varying: TVec<usize> = (0..ss.len()).filter(|&a| ss[a] != 1).collect();
        let zero = T::zero();
        let pick = |v: T, a: T| if v > zero { v } else { a * v };
        let mut out = x;
        {
            let slope_plain = slope.try_as_plain_ram()?;
            let slopes = slope_plain.as_slice::<T>()?;
            let mut plain = out.try_as_plain_ram_mut()?;
            let values = plain.as_slice_mut::<T>()?;
            match varying[..] {
                [] => values.iter_mut().for_each(|v| *v = pick(*v, slopes[0])),
                [axis] if ss[axis] == xs[axis] => {
                    let inner: usize = xs[axis + 1..].iter().product();
                    if inner == 1 {
                        for row in values.chunks_exact_mut(xs[axis]) {
                            for (v, &a) in row.iter_mut().zip(slopes) {
                                *v = pick(*v, a);
                            }
                        }
                    } else {
                        for (run, &a) in values.chunks_exact_mut(inner).zip(slopes.iter().cycle()) {
                            run.iter_mut().for_each(|v| *v = pick(*v, a));
                        }
                    }
                }
                _ => {
                    let slope = slope
                        .to_plain_array_view::<T>()?
                        .into_shape_with_order(tract_ndarray::IxDyn(&ss))?;
                    let slope = slope
                        .broadcast(xs)
                        .context("PRelu slope does not broadcast")?;
                    let mut view = tract_ndarray::ArrayViewMut::from_shape(xs, values)?;
                    tract_ndarray::Zip::from(&mut view)
                        .and(&slope)
                        .for_each(|v, &a| *v = pick(*v, a));
                }
            }
        }
        Ok(out)
    }
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        clear_upper_vector_state();
        let (x, slope) = args_2!(inputs);
        let x = x.into_tensor();
        let slope = slope.into_tensor();
        let out = dispatch_floatlike!(Self::run_t(x.datum_type())(x, &slope))?;
        Ok(tvec!(out.into_tvalue()))
    }
}

elementwise_op!(ChannelPrelu);

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `path` on `input` through tract as shipped, or with our kernels.
    /// Also returns how many ops were swapped, and how many PReLUs are ours.
    fn run(path: &str, shape: &[usize], input: &[f32], ours: bool) -> (Vec<Tensor>, usize, usize) {
        let mut onnx = tract_onnx::onnx();
        if ours {
            register(&mut onnx);
        }
        let mut typed = onnx
            .model_for_path(path)
            .unwrap()
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_typed()
            .unwrap()
            .into_decluttered()
            .unwrap();
        let swapped = if ours { swap(&mut typed).unwrap() } else { 0 };
        let optimized = typed.into_optimized().unwrap();
        let prelus = optimized
            .nodes()
            .iter()
            .filter(|n| n.op_is::<ChannelPrelu>())
            .count();
        let plan = optimized.into_runnable().unwrap();
        let input = Tensor::from_shape(shape, input).unwrap();
        let out = plan.run(tvec!(input.into())).unwrap();
        (
            out.into_iter().map(|t| t.into_tensor()).collect(),
            swapped,
            prelus,
        )
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    fn max_diff(a: &[Tensor], b: &[Tensor]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .flat_map(|(a, b)| {
                assert_eq!(a.shape(), b.shape());
                let (a, b) = (values(a), values(b));
                a.into_iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0, f32::max)
    }

    /// A real photograph as MTCNN takes it: `1×W×H×3`, width first, RGB,
    /// `(x − 127.5) / 128`.
    fn mtcnn_input(width: u32, height: u32) -> Vec<f32> {
        let img = image::open("tests/data/group_t1.jpg").unwrap().to_rgb8();
        let img =
            image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle);
        let mut out = Vec::with_capacity((width * height * 3) as usize);
        for x in 0..width {
            for y in 0..height {
                out.extend(
                    img.get_pixel(x, y)
                        .0
                        .iter()
                        .map(|&v| (v as f32 - 127.5) / 128.0),
                );
            }
        }
        out
    }

    #[test]
    fn mtcnn_reads_the_same_with_our_kernels() {
        // P-Net at two pyramid levels (odd sizes: the 2×2 pool pads), R-Net
        // and O-Net (3×3 pools, one padded), on a real photograph; each ends
        // in a softmax over its two classes.
        for (model, w, h, pools, prelus) in [
            ("pnet", 193, 145, 1, 3),
            ("pnet", 97, 73, 1, 3),
            ("rnet", 24, 24, 2, 4),
            ("onet", 48, 48, 3, 5),
        ] {
            let path = format!("models/mtcnn/{model}.onnx");
            let shape = [1, w as usize, h as usize, 3];
            let input = mtcnn_input(w, h);
            let (theirs, _, _) = run(&path, &shape, &input, false);
            let (ours, swapped, ours_prelu) = run(&path, &shape, &input, true);
            assert_eq!(
                swapped,
                pools + 1,
                "{model}: its pools and its softmax swapped"
            );
            assert_eq!(ours_prelu, prelus, "{model}: its PReLUs");
            let d = max_diff(&theirs, &ours);
            assert!(d <= 1e-6, "{model} {w}x{h}: outputs differ by {d}");
        }
    }

    #[test]
    fn the_emotion_model_reads_bit_for_bit_the_same() {
        let img = image::open("tests/data/astronaut.png").unwrap().to_luma8();
        let face = image::imageops::crop_imm(&img, 140, 40, 180, 180).to_image();
        let face = image::imageops::resize(&face, 48, 48, image::imageops::FilterType::Triangle);
        let input: Vec<f32> = face.pixels().map(|p| p.0[0] as f32 / 255.0).collect();
        let path = "models/fernet-w16/model.onnx";
        let (theirs, _, _) = run(path, &[1, 1, 48, 48], &input, false);
        let (ours, swapped, _) = run(path, &[1, 1, 48, 48], &input, true);
        assert_eq!(swapped, 4, "its four 2×2 pools");
        assert_eq!(max_diff(&theirs, &ours), 0.0);
    }

    #[test]
    fn max_pool_pads_and_strides_as_onnx_says() {
        // One 1×1×3×5 plane, 2×2 kernel, stride 2, one column of padding
        // after (ONNX ceil mode): the last window holds one column.
        let op = PlaneMaxPool {
            input: tvec![1, 1, 3, 5],
            output: tvec![1, 1, 2, 3],
            kernel: [2, 2],
            strides: [2, 2],
            pad_before: [0, 0],
        };
        let input: Vec<f32> = (0..15)
            .map(|v| v as f32 * if v % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let mut out = vec![0.0; 6];
        op.run(&input, &mut out);
        // rows 0–1 then row 2 alone: max of each window.
        assert_eq!(out, vec![6.0, 8.0, 4.0, 10.0, 12.0, 14.0]);
        // Padding before: the first window holds only the first pixel.
        let op = PlaneMaxPool {
            pad_before: [1, 1],
            output: tvec![1, 1, 2, 3],
            ..op
        };
        op.run(&input, &mut out);
        assert_eq!(out, vec![0.0, 2.0, 4.0, 10.0, 12.0, 14.0]);
    }

    #[test]
    fn prelu_broadcasts_per_channel_per_row_and_in_general() {
        let x = Tensor::from_shape(&[1, 2, 2], &[-1.0f32, 2.0, -3.0, 4.0]).unwrap();
        // Per channel (axis 1), as [2, 1].
        let slope = Tensor::from_shape(&[2, 1], &[0.5f32, 0.25]).unwrap();
        let out = ChannelPrelu::run_t::<f32>(x.clone(), &slope).unwrap();
        assert_eq!(values(&out), vec![-0.5, 2.0, -0.75, 4.0]);
        // Per last axis, as [2].
        let slope = Tensor::from_shape(&[2], &[0.5f32, 0.25]).unwrap();
        let out = ChannelPrelu::run_t::<f32>(x.clone(), &slope).unwrap();
        assert_eq!(values(&out), vec![-0.5, 2.0, -1.5, 4.0]);
        // Varying along two axes: the general path.
        let slope = Tensor::from_shape(&[2, 2], &[0.1f32, 0.2, 0.3, 0.4]).unwrap();
        let out = ChannelPrelu::run_t::<f32>(x.clone(), &slope).unwrap();
        assert_eq!(values(&out), vec![-0.1, 2.0, -3.0 * 0.3, 4.0]);
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let mut v = vec![1.0f32, 2.0, -3.0, 1000.0, 999.0, 0.0];
        LastAxisSoftmax::run(&mut v, 3);
        for row in v.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(v[1] > v[0] && v[0] > v[2] && v[3] > v[4]);
        assert!((v[1] - 0.7275).abs() < 1e-3, "{v:?}");
    }
}
