"""LLVM intrinsics of the fused CPU kernels: bit casts, vector width, pointers, streaming stores,
an atomic compare-and-swap."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _bitcast(from_type: types.Number, to_type: types.Number, llvm_from, llvm_to):
    """An intrinsic: the ``to_type`` with the IEEE bits of a ``from_type`` value. Integers are
    first cut (or widened) to the float's width: numba widens int32 arithmetic to int64."""

    @intrinsic
    def bitcast(typingctx, value):
        if not isinstance(value, (types.Integer, types.Float)):  # pragma: no cover
            return None

        def codegen(context, builder, signature, args):
            cast = context.cast(builder, args[0], signature.args[0], from_type)
            return builder.bitcast(cast, llvm_to)

        return to_type(value), codegen

    return bitcast


_f32_from_bits = _bitcast(types.int32, types.float32, ir.IntType(32), ir.FloatType())
_f64_from_bits = _bitcast(types.int64, types.float64, ir.IntType(64), ir.DoubleType())
_bits_of_f32 = _bitcast(types.float32, types.int32, ir.FloatType(), ir.IntType(32))
_bits_of_f64 = _bitcast(types.float64, types.int64, ir.DoubleType(), ir.IntType(64))


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorise the calling function with the widest registers the CPU has (512-bit
    on AVX-512 machines, where LLVM's default tuning prefers 256 bits): the kernels then issue
    half the instructions. A no-op on CPUs without wider registers."""

    def codegen(context, builder, signature, args):
        # string attributes, which llvmlite's attribute set does not list as known
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        set.add(builder.function.attributes, '"min-legal-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


# ------------------------------------------------------------------- row views, streaming stores
@intrinsic
def _pointer(typingctx, address):
    """The ``void*`` at an integer address."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(types.int64), codegen


@intrinsic
def _address(typingctx, array):
    """The address of ``array``'s first element."""

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, value=args[0])
        return builder.ptrtoint(arr.data, ir.IntType(64))

    return types.int64(array), codegen


@intrinsic
def _stream_line(typingctx, dst, j, src, k):
    """``dst[j:j + L] = src[k:k + L]`` for the L elements of one 64-byte line, with a streaming
    (non-temporal) store: ``dst[j]`` must be 64-byte aligned."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype):  # pragma: no cover
        return None

    def codegen(context, builder, signature, args):
        elem = context.get_data_type(signature.args[0].dtype)
        line = ir.VectorType(elem, 64 // context.get_abi_sizeof(elem))
        out = context.make_array(signature.args[0])(context, builder, value=args[0])
        inp = context.make_array(signature.args[2])(context, builder, value=args[2])
        value = builder.load(builder.bitcast(builder.gep(inp.data, [args[3]]), line.as_pointer()),
                             align=context.get_abi_sizeof(elem))
        store = builder.store(value, builder.bitcast(builder.gep(out.data, [args[1]]),
                                                     line.as_pointer()), align=64)
        store.set_metadata("nontemporal",
                           builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(dst, types.intp, src, types.intp), codegen


@intrinsic
def _store_fence(typingctx):
    """A full memory fence: the streaming stores before it are visible to every thread after
    it (they are weakly ordered)."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _compare_and_swap(typingctx, array, index, expected, new):
    """Atomically: if ``array[index]`` (int64) equals ``expected``, store ``new``; returns the
    value found."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, value=args[0])
        ptr = builder.gep(arr.data, [args[1]])
        pair = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return types.int64(array, types.int64, types.int64, types.int64), codegen


@intrinsic
def _prefetch(typingctx, address):
    """A software prefetch for reading of the cache line at the integer ``address`` into L2
    (``llvm.prefetch``, locality 2: ``prefetcht1`` on x86); never faults."""

    def codegen(context, builder, signature, args):
        ptr_t = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [ptr_t], ir.FunctionType(ir.VoidType(), [ptr_t, i32, i32, i32]))
        builder.call(fn, [builder.inttoptr(args[0], ptr_t), ir.Constant(i32, 0),
                          ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(address), codegen
