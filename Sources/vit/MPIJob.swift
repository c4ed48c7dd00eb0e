import Foundation
import Parallel
import Training

/// The MPI job this process is one rank of, when `mpirun` (or `srun --mpi=pmix`) started it; nil otherwise, and then
/// nothing of MPI is loaded. Joined on first use by a training command.
enum MPIJob {
    nonisolated(unsafe) private static var joined: Result<DataParallel?, Error>?

    /// This process's job; throws when a launcher started it but MPI cannot be joined.
    static func current() throws -> DataParallel? {
        if let joined { return try joined.get() }
        let result = Result { try Communicator.joinIfLaunched().map(DataParallel.init) }
        joined = result
        if case .success(let job?) = result, job.ranks > 1 { rank = job.rank }
        return try result.get()
    }

    /// This process's rank in a job of several (printing depends on it), nil alone.
    nonisolated(unsafe) private(set) static var rank: Int?

    /// The ranks the training commands' `--batch-size` is multiplied by to make the global batch: 1 alone.
    static func ranks() throws -> Int { try current()?.ranks ?? 1 }

    /// Leaves the job after a command that ran to its end, or after a failure every rank met at the same step; any
    /// other failure of one rank ends every rank at once (`MPI_Abort`), since the others would wait for it forever.
    static func end(failed: Bool) {
        guard case .success(let job?)? = joined else { return }
        if failed && !job.failedTogether { job.communicator.abortJob(code: 2) }
        job.communicator.finish()
    }
}
