import ArgumentParser

/// What differs per station, given on the command line instead of the pipeline file or the
/// environment: `keyline provision` and `keyline station check` take the same four, so a check
/// runs with exactly the settings the shift will.
struct StationSettingsOptions: ParsableArguments {
    @Option(help: "This station's name (default: KEYLINE_STATION, the pipeline's `station:`, or the host name).")
    var station: String?

    @Option(help: "Escrow store: a directory or s3://bucket/prefix (default: the pipeline's or KEYLINE_ESCROW_STORE).")
    var store: String?

    @Option(help: "File of age recipients (age1…) to escrow to (default: the pipeline's or KEYLINE_RECIPIENTS).")
    var recipients: String?

    @Option(help: "The registry database (a postgresql:// URI or conninfo; default: the pipeline's, DATABASE_URL or libpq's PG* variables).")
    var database: String?
}
