import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Open MPI's C library (`libmpi.so.40`, Debian's `libopenmpi3`), opened at run time rather than linked.
///
/// Why at run time: one `vit` binary then runs everywhere. A machine without Open MPI builds and runs SwiftViT
/// single-process as before (nothing is opened unless a launcher started the process), and a cluster's own Open MPI
/// (built for its network) is the one used, found by the loader's usual search path (`LD_LIBRARY_PATH`, as
/// `module load openmpi` sets). The price is Open MPI's ABI: handles are pointers to its predefined objects
/// (`&ompi_mpi_comm_world`, `&ompi_mpi_float`, `&ompi_mpi_op_sum`), read here with `dlsym`. MPICH and its
/// derivatives use integer handles; a process they start is told so (`MPILaunch.detect`).
///
/// The library is opened `RTLD_GLOBAL`: Open MPI loads its own components (transports, collectives) as plug-ins that
/// resolve symbols against it, as mpi4py does.
final class OpenMPI {
    typealias Handle = OpaquePointer
    typealias Request = OpaquePointer?

    private let library: UnsafeMutableRawPointer
    let commWorld: Handle
    let byte: Handle, float: Handle, double: Handle, int32: Handle
    let sum: Handle, max: Handle

    let initThread: @convention(c) (OpaquePointer?, OpaquePointer?, Int32, UnsafeMutablePointer<Int32>) -> Int32
    let commRank: @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    let commSize: @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    let iallreduce:
        @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle, Handle, UnsafeMutablePointer<Request>) -> Int32
    let ibcast: @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Handle, UnsafeMutablePointer<Request>) -> Int32
    let iallgather:
        @convention(c) (UnsafeRawPointer?, Int32, Handle, UnsafeMutableRawPointer?, Int32, Handle, Handle, UnsafeMutablePointer<Request>) ->
            Int32
    let test: @convention(c) (UnsafeMutablePointer<Request>, UnsafeMutablePointer<Int32>, OpaquePointer?) -> Int32
    let abort: @convention(c) (Handle, Int32) -> Int32
    let finalize: @convention(c) () -> Int32

    /// `MPI_THREAD_FUNNELED` (Open MPI's value): only the thread that initialised MPI calls it.
    static let threadFunneled: Int32 = 1
    /// `MPI_IN_PLACE` (Open MPI's value).
    static let inPlace = UnsafeRawPointer(bitPattern: 1)

    /// The library names tried, in order.
    static let names = ["libmpi.so.40", "libmpi.so"]

    init() throws {
        var opened: UnsafeMutableRawPointer?
        var reasons: [String] = []
        for name in Self.names {
            opened = dlopen(name, RTLD_NOW | RTLD_GLOBAL)
            if opened != nil { break }
            reasons.append(dlerror().map { String(cString: $0) } ?? name)
        }
        guard let library = opened else {
            throw MPIError(
                "Open MPI's library could not be opened (\(reasons.joined(separator: "; "))): install it (Debian: openmpi-bin) or put its lib folder on LD_LIBRARY_PATH"
            )
        }
        self.library = library
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let address = dlsym(library, name) else {
                throw MPIError("\(name) is missing from the MPI library: SwiftViT speaks Open MPI's ABI (4.x or 5.x)")
            }
            return address
        }
        func function<F>(_ name: String, as type: F.Type) throws -> F { unsafeBitCast(try symbol(name), to: type) }
        commWorld = Handle(try symbol("ompi_mpi_comm_world"))
        byte = Handle(try symbol("ompi_mpi_byte"))
        float = Handle(try symbol("ompi_mpi_float"))
        double = Handle(try symbol("ompi_mpi_double"))
        int32 = Handle(try symbol("ompi_mpi_int"))
        sum = Handle(try symbol("ompi_mpi_op_sum"))
        max = Handle(try symbol("ompi_mpi_op_max"))
        initThread = try function("MPI_Init_thread", as: type(of: initThread))
        commRank = try function("MPI_Comm_rank", as: type(of: commRank))
        commSize = try function("MPI_Comm_size", as: type(of: commSize))
        iallreduce = try function("MPI_Iallreduce", as: type(of: iallreduce))
        ibcast = try function("MPI_Ibcast", as: type(of: ibcast))
        iallgather = try function("MPI_Iallgather", as: type(of: iallgather))
        test = try function("MPI_Test", as: type(of: test))
        abort = try function("MPI_Abort", as: type(of: abort))
        finalize = try function("MPI_Finalize", as: type(of: finalize))
    }
}

/// A problem with the MPI library or a collective, as one line.
public struct MPIError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// How this process was started: by an MPI launcher (`mpirun`, `srun --mpi=pmix`) or on its own.
public enum MPILaunch {
    /// The launcher's variables that say a process is one rank of several, and which MPI set them.
    public static func detect(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Result<Bool, MPIError> {
        if environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil { return .success(true) }
        if environment["PMI_RANK"] != nil || environment["MPI_LOCALNRANKS"] != nil {
            return .failure(
                MPIError(
                    "this process was started by an MPICH-style launcher (PMI_RANK is set); SwiftViT runs on Open MPI's mpirun or srun --mpi=pmix"
                ))
        }
        return .success(false)
    }
}
