/// Converts between raw little-endian element bytes of every `StateDict.ElementType` and Float.
enum ElementCodec {
    static func byteWidth(_ type: StateDict.ElementType) -> Int {
        switch type {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// Decodes `count` elements that start `firstElement` elements into `bytes[base...]`, stepping
    /// through `elementIndices` when given (strided views), else contiguously. The caller has
    /// checked that every index lies inside the storage.
    static func decode(
        _ type: StateDict.ElementType, bytes: [UInt8], base: Int, elementIndices: [Int]
    ) -> [Float] {
        let width = byteWidth(type)
        return bytes.withUnsafeBytes { raw in
            elementIndices.map { index in
                decodeOne(type, raw: raw, byteOffset: base + index * width)
            }
        }
    }

    static func decodeContiguous(
        _ type: StateDict.ElementType, bytes: [UInt8], base: Int, count: Int
    ) -> [Float] {
        let width = byteWidth(type)
        return bytes.withUnsafeBytes { raw in
            #if _endian(little)
            if type == .float32 {
                // The common case, a straight copy: checkpoints are little-endian like the host.
                return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    if count > 0, let destination = buffer.baseAddress, let source = raw.baseAddress {
                        UnsafeMutableRawPointer(destination).copyMemory(from: source + base, byteCount: count * 4)
                    }
                    initialized = count
                }
            }
            #endif
            return (0..<count).map { index in decodeOne(type, raw: raw, byteOffset: base + index * width) }
        }
    }

    @inline(__always)
    private static func decodeOne(_ type: StateDict.ElementType, raw: UnsafeRawBufferPointer, byteOffset: Int) -> Float {
        switch type {
        case .float32:
            return Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset, as: UInt32.self)))
        case .float64:
            return Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset, as: UInt64.self))))
        case .float16:
            return floatFromHalf(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset, as: UInt16.self)))
        case .bfloat16:
            return Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset, as: UInt16.self))) << 16)
        case .int64:
            return Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset, as: Int64.self)))
        case .int32:
            return Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset, as: Int32.self)))
        case .int16:
            return Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: byteOffset, as: Int16.self)))
        case .int8:
            return Float(Int8(bitPattern: raw[byteOffset]))
        case .uint8:
            return Float(raw[byteOffset])
        case .bool:
            return raw[byteOffset] == 0 ? 0 : 1
        }
    }

    /// Appends the little-endian encoding of `values` as `type`; integer types round to nearest
    /// and saturate, so a Float that came from an integer tensor is written back exactly.
    static func encode(_ values: [Float], as type: StateDict.ElementType, into output: inout [UInt8]) {
        output.reserveCapacity(output.count + values.count * byteWidth(type))
        func append<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { output.append(contentsOf: $0) }
        }
        func saturated<T: FixedWidthInteger>(_ value: Float, as _: T.Type) -> T {
            guard value.isFinite else { return value.isNaN ? 0 : (value > 0 ? T.max : T.min) }
            let rounded = value.rounded()
            if rounded <= Float(T.min) { return T.min }
            if rounded >= Float(T.max) { return T.max }
            return T(rounded)
        }
        for value in values {
            switch type {
            case .float32: append(value.bitPattern)
            case .float64: append(Double(value).bitPattern)
            case .float16: append(halfFromFloat(value))
            case .bfloat16: append(bfloat16FromFloat(value))
            case .int64: append(saturated(value, as: Int64.self))
            case .int32: append(saturated(value, as: Int32.self))
            case .int16: append(saturated(value, as: Int16.self))
            case .int8: append(saturated(value, as: Int8.self))
            case .uint8: append(saturated(value, as: UInt8.self))
            case .bool: append(UInt8(value != 0 ? 1 : 0))
            }
        }
    }

    /// IEEE binary16 to binary32, written out because `Float16` is not available on every
    /// platform we build for.
    static func floatFromHalf(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = Int((bits >> 10) & 0x1F)
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -magnitude : magnitude
        }
        return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
    }

    /// Binary32 to binary16 with round-to-nearest-even, overflow to infinity.
    static func halfFromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF)
        let mantissa = bits & 0x7F_FFFF
        if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0) }
        let halfExponent = exponent - 127 + 15
        if halfExponent >= 0x1F { return sign | 0x7C00 }
        if halfExponent <= 0 {
            if halfExponent < -10 { return sign }
            let full = mantissa | 0x80_0000
            let shift = UInt32(14 - halfExponent)
            var half = full >> shift
            let remainder = full & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            if remainder > halfway || (remainder == halfway && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(halfExponent) << 10 | (mantissa >> 13)
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }

    static func bfloat16FromFloat(_ value: Float) -> UInt16 {
        if value.isNaN { return 0x7FC0 }
        let bits = value.bitPattern
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }
}
