import CDNNL
import CKernels
import Foundation

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

/// How wide the vectors of oneDNN's kernels may be. oneDNN fixes this for the process when it
/// first generates a kernel, so it is chosen once, before the engine's first use
/// (`CPUCapabilities.limitInstructionSet`).
public enum InstructionSetChoice: String, CaseIterable, Sendable {
    /// AVX2 for float inference where the CPU's 512-bit FMAs compute no more than 256-bit
    /// ones; AVX-512 otherwise.
    case auto
    /// At most AVX2 (and FMA): qsh's own convolution kernels run, and integer layers have no
    /// VNNI unless the CPU has AVX-VNNI.
    case avx2
    /// Everything the CPU has.
    case avx512
}

extension CPUCapabilities {
    /// The environment variables with which oneDNN lets a user cap its instruction set; when
    /// one is set, it decides.
    static let oneDNNInstructionSetVariables = ["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"]

    /// Floating-point operations a second with 512-bit FMAs over those with 256-bit ones, as
    /// measured when first asked (0 without AVX-512).
    public static let fma512Speedup: Double = qsh_fma512_speedup()

    /// Applies `choice` before oneDNN's first kernel and says whether it capped oneDNN at AVX2.
    /// `floatInferenceOnly`: whether the process runs only float inference (no int8 engine, no
    /// training).
    ///
    /// On AMD Zen 4 (AVX-512 as two 256-bit halves, `fma512Speedup` about 1) oneDNN's AVX2
    /// kernels and qsh's own ran float inference 6 to 20% faster than its AVX-512 kernels, but
    /// int8 inference 4 times slower without AVX-512 VNNI and training steps 8% slower
    /// (Benchmarks/README.md), so `auto` caps only a process of float inference.
    @discardableResult
    public static func limitInstructionSet(_ choice: InstructionSetChoice, floatInferenceOnly: Bool) -> Bool {
        let environment = ProcessInfo.processInfo.environment
        if oneDNNInstructionSetVariables.contains(where: { environment[$0] != nil }) { return false }
        let cap: Bool
        switch choice {
        case .avx512: cap = false
        case .avx2: cap = true
        case .auto: cap = floatInferenceOnly && fma512Speedup > 0 && fma512Speedup < 1.5
        }
        guard cap else { return false }
        return dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2) == dnnl_success
    }
}
