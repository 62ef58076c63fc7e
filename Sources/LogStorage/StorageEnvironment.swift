import LogIO
import Logging

/// What storage code needs from its surroundings, as one value: the file system (real or
/// simulated), the settings, the wall clock (append time), the threads that run blocking
/// file work, and the logger. Tests and the simulation pass their own of each.
public struct StorageEnvironment: Sendable {
    public var fileIO: any FileIO
    public var configuration: StorageConfiguration
    public var clock: any WallClock
    public var executor: any BlockingExecutor
    public var logger: Logger

    public init(
        fileIO: any FileIO, configuration: StorageConfiguration = StorageConfiguration(),
        clock: any WallClock = SystemWallClock(), executor: any BlockingExecutor, logger: Logger
    ) {
        self.fileIO = fileIO
        self.configuration = configuration
        self.clock = clock
        self.executor = executor
        self.logger = logger
    }
}
