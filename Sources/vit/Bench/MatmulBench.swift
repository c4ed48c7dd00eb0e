import ArgumentParser
import CDNNL
import Foundation
import Tensors

/// The engine's matmul against a bare oneDNN matmul on the same shapes, in the same process: the difference is the
/// engine's overhead (tensor allocation, primitive cache look-up, memory wrapping).
struct MatmulBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul",
        abstract: "Engine matmul vs a bare oneDNN call on ViT-B/16 shapes (M x K x N, batch 1 and 16)."
    )

    @Flag(help: "One JSON object per shape instead of a table.")
    var json = false

    @Option(help: "Minimum seconds to time each shape on each path.")
    var seconds: Double = 1.0

    static let shapes: [(m: Int, k: Int, n: Int)] = [197, 3152].flatMap { m in
        [(m, 768, 2304), (m, 768, 768), (m, 768, 3072), (m, 3072, 768)]
    }

    func run() throws {
        if !json {
            print("oneDNN \(OneDNN.version), fp32. Median time per call; GFLOP/s = 2·M·K·N / time.")
            print("shape (MxKxN)       engine ms  engine GFLOP/s   oneDNN ms  oneDNN GFLOP/s   engine/oneDNN")
        }
        for (m, k, n) in Self.shapes {
            var rng = SeededGenerator(seed: 1)
            let a = Tensor.randn([m, k], using: &rng), b = Tensor.randn([k, n], using: &rng)
            let bare = BareMatmul(m: m, k: k, n: n)
            let flops = 2.0 * Double(m * k * n)
            let engineSeconds = Autograd.withNoGrad {
                medianSeconds(minimumSeconds: seconds) { _ = a.matmul(b) }
            }
            let bareSeconds = medianSeconds(minimumSeconds: seconds) { bare.run() }
            let engineGflops = flops / engineSeconds / 1e9, bareGflops = flops / bareSeconds / 1e9
            let shape = "\(m)x\(k)x\(n)"
            if json {
                print(
                    "{\"shape\": \"\(shape)\", \"engine_gflops\": \(format(engineGflops)), \"onednn_gflops\": \(format(bareGflops)), \"engine_ms\": \(format(engineSeconds * 1e3, 3)), \"onednn_ms\": \(format(bareSeconds * 1e3, 3))}"
                )
            } else {
                print(
                    shape.padding(toLength: 18, withPad: " ", startingAt: 0),
                    format(engineSeconds * 1e3, 3).leftPadded(10), format(engineGflops).leftPadded(15),
                    format(bareSeconds * 1e3, 3).leftPadded(11), format(bareGflops).leftPadded(15),
                    (format(100 * bareSeconds / engineSeconds) + "%").leftPadded(15))
            }
        }
    }
}

/// A matmul made and run with nothing but the oneDNN C API: buffers and memory objects made once.
final class BareMatmul {
    private var primitive: dnnl_primitive_t?
    private var memories: [dnnl_memory_t?] = []
    private var args: [dnnl_exec_arg_t] = []
    private let engine: dnnl_engine_t
    private let stream: dnnl_stream_t

    init(m: Int, k: Int, n: Int) {
        var engine: dnnl_engine_t?, stream: dnnl_stream_t?
        dnnl_engine_create(&engine, dnnl_cpu, 0)
        dnnl_stream_create(&stream, engine, dnnl_stream_default_flags.rawValue)
        self.engine = engine!
        self.stream = stream!
        func desc(_ rows: Int, _ columns: Int) -> dnnl_memory_desc_t {
            var md = dnnl_memory_desc_t()
            let dims: [dnnl_dim_t] = [dnnl_dim_t(rows), dnnl_dim_t(columns)]
            dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_f32, dnnl_ab)
            return md
        }
        var a = desc(m, k), b = desc(k, n), c = desc(m, n)
        var op = dnnl_matmul_desc_t()
        dnnl_matmul_desc_init(&op, &a, &b, nil, &c)
        var pd: dnnl_primitive_desc_t?
        dnnl_primitive_desc_create(&pd, &op, nil, engine, nil)
        dnnl_primitive_create(&primitive, pd)
        dnnl_primitive_desc_destroy(pd)
        for (arg, var md, count) in [(DNNL_ARG_SRC_0, a, m * k), (DNNL_ARG_WEIGHTS_0, b, k * n), (DNNL_ARG_DST_0, c, m * n)] {
            var memory: dnnl_memory_t?
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for i in 0..<count { buffer[i] = Float(i % 17) * 0.01 - 0.08 }
            dnnl_memory_create(&memory, &md, engine, buffer)
            memories.append(memory)
            args.append(dnnl_exec_arg_t(arg: Int32(arg), memory: memory))
        }
    }

    func run() {
        dnnl_primitive_execute(primitive, stream, Int32(args.count), args)
        dnnl_stream_wait(stream)
    }

    deinit {
        for memory in memories {
            var handle: UnsafeMutableRawPointer?
            dnnl_memory_get_data_handle(memory, &handle)
            handle?.deallocate()
            dnnl_memory_destroy(memory)
        }
        dnnl_primitive_destroy(primitive)
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
