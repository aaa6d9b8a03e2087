package dev.fedge.core;

/**
 * The rules of one round's local work that every trainer follows (device_runtime/training.py
 * on the Python side): FedProx's proximal term needs a model whose train signature takes
 * {@code proximal_mu}; a time budget ({@code max_local_seconds}) stops training at the first
 * batch boundary after it; work cut short is uploaded only when the plan takes partial work,
 * with the examples processed divided by the planned epochs as its example count.
 */
public final class LocalWork {
    /** Training ended before the plan's epochs and the task takes no partial work: no upload. */
    public static final class Unfinished extends Exception {
        private static final long serialVersionUID = 1L;

        public Unfinished(String message) {
            super(message);
        }
    }

    private final Plan plan;
    private final long startedNanos;
    private int processed;
    private boolean stopped;

    public LocalWork(Plan plan, long startedNanos) {
        this.plan = plan;
        this.startedNanos = startedNanos;
    }

    /** Refuses a plan the model file cannot run, naming why (as protocol.manifest.check_plan). */
    public static void checkPlan(Plan plan, boolean trainTakesProximalMu, String modelName) {
        if (plan.proximalMu > 0 && !trainTakesProximalMu) {
            throw new ProtocolException("the task asks for FedProx (proximal_mu " + plan.proximalMu + ") but model '"
                    + modelName + "' was exported before FedProx: its train signature has no proximal_mu input; "
                    + "export it again with this fedge", "unsupported_plan");
        }
    }

    /**
     * The signature a trainer steps with (as protocol.manifest.train_signature): {@code train_plain}
     * when the round uses neither FedProx's term nor SCAFFOLD's correction and the file has it
     * (files exported with that second step, without the terms), else {@code train}.
     */
    public static String trainSignature(String[] signatureKeys, double proximalMu, boolean corrected) {
        return trainSignature(signatureKeys, proximalMu, corrected, false);
    }

    /**
     * As above, with {@code train_dp} (example-level DP-SGD) when the round asks for it; check
     * the file with {@link #checkDpSgd} first.
     */
    public static String trainSignature(String[] signatureKeys, double proximalMu, boolean corrected,
                                        boolean dpSgd) {
        if (dpSgd) {
            return "train_dp";
        }
        if (proximalMu == 0 && !corrected && java.util.Arrays.asList(signatureKeys).contains("train_plain")) {
            return "train_plain";
        }
        return "train";
    }

    /** Refuses a DP-SGD plan for a file without train_dp (as protocol.manifest.check_plan). */
    public static void checkDpSgd(Plan plan, String[] signatureKeys, String modelName) {
        if (plan.dpSgd() && !java.util.Arrays.asList(signatureKeys).contains("train_dp")) {
            throw new ProtocolException("the task asks for example-level DP-SGD but model '" + modelName
                    + "' has no train_dp signature; export it with fedge export --dp-sgd", "unsupported_plan");
        }
    }

    /** Whether to stop before the next batch: the budget is spent (checked at batch boundaries). */
    public boolean budgetSpent(long nowNanos) {
        if (plan.maxLocalSeconds > 0 && (nowNanos - startedNanos) / 1e9 >= plan.maxLocalSeconds) {
            stopped = true;
        }
        return stopped;
    }

    public void processed(int examples) {
        processed += examples;
    }

    /**
     * The upload's example count: the local dataset size after all the plan's epochs,
     * processed / epochs after partial work; throws when the work does not count.
     */
    public int exampleCount(int localExamples, int epochsDone) throws Unfinished {
        boolean partial = stopped || epochsDone < plan.epochs;
        if (!partial) {
            return localExamples;
        }
        if (!plan.partialWork || processed == 0) {
            throw new Unfinished((stopped ? "the " + plan.maxLocalSeconds + " s budget ended training"
                    : "this device could do " + epochsDone + " of " + plan.epochs + " epochs")
                    + (processed == 0 ? " before the first batch" : "; the task does not take partial work"));
        }
        return Math.max(1, (int) Math.round(processed / (double) plan.epochs));
    }
}
