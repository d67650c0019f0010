import CDNNL

/// The instruction set the engine's oneDNN kernels run with on this machine.
///
/// It matters for integer convolutions: with VNNI (AVX-512 VNNI or AVX-VNNI), u8 x s8 products
/// accumulate straight into int32. Without it, oneDNN's AVX2 and AVX-512 kernels first add
/// pairs of products into int16 with saturation (`vpmaddubsw`), which can clip a sum that the
/// simulation keeps; `IntegerPlan` keeps such layers in float.
public enum CPUCapabilities {
    /// oneDNN's name for the instruction set it uses, e.g. "avx2" or "avx512_core_vnni".
    public static var isaName: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_sse41: return "sse41"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx512_mic, dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        default: return "unknown"
        }
    }

    /// Whether int8 dot products accumulate in int32 without an int16 step. The ISA values are
    /// bit sets: 0x40 marks AVX-512 VNNI (and everything above it), 0x400 AVX-VNNI.
    public static var hasVNNI: Bool {
        let isa = dnnl_get_effective_cpu_isa().rawValue
        return isa & 0x40 != 0 || isa & 0x400 != 0
    }
}
