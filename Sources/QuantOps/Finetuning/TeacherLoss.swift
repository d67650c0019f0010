import Foundation

/// The losses a student is fine-tuned with against its float teacher, on logits (N, classes),
/// averaged over the batch, each with its gradient with respect to the student's logits.
/// Softmaxes are taken in Double with the maximum subtracted, so large logits neither overflow
/// nor lose the small probabilities KL depends on.
public enum TeacherLoss {
    /// Per-row log-softmax of logits (N, classes).
    public static func logSoftmax(_ logits: Tensor) -> [Double] {
        let rows = logits.shape[0], classes = logits.count / max(rows, 1)
        var result = [Double](repeating: 0, count: logits.count)
        for row in 0 ..< rows {
            let base = row * classes
            var largest = -Double.infinity
            for c in 0 ..< classes { largest = max(largest, Double(logits.data[base + c])) }
            var total = 0.0
            for c in 0 ..< classes { total += exp(Double(logits.data[base + c]) - largest) }
            let logTotal = log(total) + largest
            for c in 0 ..< classes { result[base + c] = Double(logits.data[base + c]) - logTotal }
        }
        return result
    }

    /// KL(teacher || student) = sum over classes of p_T (log p_T - log p_S), mean over rows
    /// (PyTorch's `kl_div(..., reduction="batchmean")`); the gradient is (p_S - p_T) / N.
    public static func klDivergence(teacherLogProbabilities teacher: [Double], studentLogits: Tensor) -> (value: Double, gradient: Tensor) {
        let rows = studentLogits.shape[0]
        let student = logSoftmax(studentLogits)
        var value = 0.0
        var gradient = [Float](repeating: 0, count: studentLogits.count)
        for index in student.indices {
            let teacherProbability = exp(teacher[index])
            if teacherProbability > 0 { value += teacherProbability * (teacher[index] - student[index]) }
            gradient[index] = Float((exp(student[index]) - teacherProbability) / Double(rows))
        }
        return (value / Double(rows), Tensor(shape: studentLogits.shape, data: gradient))
    }

    /// Cross-entropy on hard labels, mean over rows; the gradient is (p_S - onehot) / N.
    public static func crossEntropy(labels: [Int], studentLogits: Tensor) -> (value: Double, gradient: Tensor) {
        let rows = studentLogits.shape[0], classes = studentLogits.count / max(rows, 1)
        let student = logSoftmax(studentLogits)
        var value = 0.0
        var gradient = [Float](repeating: 0, count: studentLogits.count)
        for row in 0 ..< rows {
            let base = row * classes
            value -= student[base + labels[row]]
            for c in 0 ..< classes {
                gradient[base + c] = Float((exp(student[base + c]) - (c == labels[row] ? 1 : 0)) / Double(rows))
            }
        }
        return (value / Double(rows), Tensor(shape: studentLogits.shape, data: gradient))
    }
}
