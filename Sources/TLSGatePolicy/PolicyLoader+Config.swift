extension PolicyLoader {
    /// The policies folder named by the global config file's top-level `policies = "DIR"`,
    /// resolved against the config file's directory when relative.
    ///
    /// Only that key is read for now; the rest of the config is not checked here.
    /// Returns nil and the diagnostics when the file cannot be read, is not valid TOML,
    /// or lacks the key.
    public static func policiesDirectory(configFile path: String) -> (directory: String?, diagnostics: [Diagnostic]) {
        let text: String
        do {
            text = try TextFile.readText(path, limit: maximumFileSize)
        } catch {
            return (nil, [.error(path, nil, "cannot read: \(error.reason)")])
        }
        let document = TOMLReader.read(text)
        guard document.errors.isEmpty else {
            return (nil, document.errors.map { .error(path, $0.line, $0.message) })
        }
        guard let value = document.table.value("policies") else {
            return (nil, [.error(path, nil, "missing policies = \"DIR\": the folder of policy files")])
        }
        guard let directory = value.stringValue, !directory.isEmpty else {
            let got = value.stringValue == nil ? value.typeDescription : "an empty string"
            return (nil, [.error(path, value.line, "policies must be a folder path, got \(got)")])
        }
        return (PathText.join(PathText.directory(of: path), directory), [])
    }
}
