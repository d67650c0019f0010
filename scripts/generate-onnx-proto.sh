#!/usr/bin/env bash
# Regenerates Sources/ONNX/onnx.pb.swift, the Swift types of the ONNX protobuf schema.
#
# The committed file was generated with:
#   schema            onnx.proto (proto2) from the `onnx` pip package 1.23.2 (IR_VERSION 14 in the schema; qsh writes IR version 7 files, opset 13),
#                     copied to Sources/ONNX/onnx.proto
#   protoc            libprotoc 3.21.12 (Debian bookworm package protobuf-compiler)
#   protoc-gen-swift  swift-protobuf 1.39.0, built with
#                     `swift build -c release --product protoc-gen-swift` in a checkout of 1.39.0
#
# Usage: scripts/generate-onnx-proto.sh /path/to/protoc-gen-swift [/path/to/onnx.proto]
# Without the second argument the checked-in Sources/ONNX/onnx.proto is used; pass the proto of
# a newer `onnx` package (python3 -c "import onnx, os; print(os.path.dirname(onnx.__file__))")
# to update the schema, then commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
plugin="${1:?usage: $0 /path/to/protoc-gen-swift [onnx.proto]}"
source_proto="${2:-Sources/ONNX/onnx.proto}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$source_proto" "$work/onnx.proto"
protoc --plugin=protoc-gen-swift="$plugin" \
    --swift_opt=Visibility=Public \
    --swift_out="$work" \
    -I "$work" "$work/onnx.proto"
[ "$source_proto" -ef Sources/ONNX/onnx.proto ] || cp "$source_proto" Sources/ONNX/onnx.proto
cp "$work/onnx.pb.swift" Sources/ONNX/onnx.pb.swift
echo "wrote Sources/ONNX/onnx.pb.swift ($(wc -l < Sources/ONNX/onnx.pb.swift) lines)"
