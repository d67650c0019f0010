/// The version `qsh --version` prints and reports record.
public enum QshVersion {
    public static let string = "0.1.0"
}
