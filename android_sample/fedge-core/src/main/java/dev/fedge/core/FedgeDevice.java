package dev.fedge.core;

import dev.fedge.core.secagg.SecAggRound;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.Random;
import java.util.function.DoubleSupplier;
import java.util.function.Supplier;

/**
 * One device's round, the same steps as the Python runtime's device loop: check in with
 * the device state, obey "come back at T", download the model and checkpoint (cached by
 * hash), give up early if training cannot finish before the reporting deadline, train,
 * clip and quantize the weight delta, upload it once.
 */
public final class FedgeDevice {
    /** What one {@link #runOnce} did. */
    public static final class RoundOutcome {
        /** uploaded | retry | abandoned | unfinished | rejected | refused, and for SecAgg rounds excluded | failed | late. */
        public final String outcome;
        public final double retryAt;
        public final String detail;

        RoundOutcome(String outcome, double retryAt, String detail) {
            this.outcome = outcome;
            this.retryAt = retryAt;
            this.detail = detail;
        }

        @Override
        public String toString() {
            return outcome + (detail.isEmpty() ? "" : " (" + detail + ")");
        }
    }

    /** Counters for the app's status screen and logs. */
    public static final class Stats {
        public int roundsJoined;
        public int uploads;
        public int abandoned;
        /** Trainings cut short by the budget in a task that takes no partial work. */
        public int unfinished;
        /** Federated evaluation reports sent. */
        public int evaluations;
        public int rejected;
        public int refused;
        public long bytesUp;
        public long float32Bytes;
        public int lastRound = -1;
        public double lastTrainLoss = Double.NaN;
        public double lastEvalAccuracy = Double.NaN;
        public String lastOutcome = "";
        /** Checkpoints reached as a held base plus a downloaded delta. */
        public int deltaDownloads;
        /** Why the last delta download fell back to the full checkpoint ("" when none did). */
        public String lastDeltaFailure = "";
    }

    private static final double SAFETY_MARGIN_S = 0.5;
    private InstalledReleases releases;
    /** Seconds before checking in again after a refused check-in or a refused round (not at once: no spinning). */
    public static final double REFUSED_WAIT_S = 5.0;

    private final FedgeClient client;
    private final LocalTrainer trainer;
    private final BlobCache cache;
    private final Supplier<DeviceState> state;
    private final DoubleSupplier clock;
    private final Random random;
    private final SecureRandom secureRandom = new SecureRandom();
    /** What this device keeps between rounds (SCAFFOLD's c_i, top-k's residuals), never uploaded. */
    public final KeptState kept = new KeptState();

    /** This device's privacy floor: only distributed-DP rounds whose devices' noise adds up to at least this. */
    private double minDpNoise;

    /**
     * Take part only in distributed-DP rounds whose devices' noise adds up to at least {@code z}
     * times the sensitivity, checked here without trusting the coordinator's min_reports.
     */
    public FedgeDevice withMinDpNoise(double z) {
        this.minDpNoise = z;
        return this;
    }

    /** Take model releases into {@code installed} (verified, swapped in atomically). */
    public FedgeDevice withReleases(InstalledReleases installed) {
        this.releases = installed;
        return this;
    }

    /** The installed releases, or null when this device takes none. */
    public InstalledReleases releases() {
        return releases;
    }

    /** Keep this device's state (SCAFFOLD's c_i, top-k's residuals) in {@code state} across runs. */
    public FedgeDevice withLocalState(LocalState state) {
        kept.storeIn(state);
        return this;
    }

    public final Stats stats = new Stats();

    /** {@code clock} returns unix seconds (System.currentTimeMillis() / 1000.0 outside tests). */
    public FedgeDevice(FedgeClient client, LocalTrainer trainer, BlobCache cache, Supplier<DeviceState> state,
                       DoubleSupplier clock, Random random) {
        this.client = client;
        this.trainer = trainer;
        this.cache = cache;
        this.state = state;
        this.clock = clock;
        this.random = random;
    }

    /**
     * One check-in and, when assigned, one round. A check-in refused with a 4xx ("rejected")
     * and a message this device will not act on ("refused": malformed, or an unsafe SecAgg
     * request) end the attempt with a retry time {@link #REFUSED_WAIT_S} ahead; network
     * errors the client could not overcome are thrown.
     */
    public RoundOutcome runOnce(double longPollS) throws Exception {
        RoundOutcome outcome;
        try {
            outcome = attempt(longPollS);
        } catch (FedgeClient.ApiException e) {
            outcome = new RoundOutcome("rejected", clock.getAsDouble() + REFUSED_WAIT_S, e.getMessage());
        } catch (ProtocolException e) {
            stats.refused++;
            outcome = new RoundOutcome("refused", clock.getAsDouble() + REFUSED_WAIT_S, e.getMessage());
        } catch (LocalWork.Unfinished e) {
            stats.unfinished++; // cut short in a task that takes no partial work: nothing to upload
            outcome = new RoundOutcome("unfinished", 0, e.getMessage());
        }
        stats.lastOutcome = outcome.outcome;
        return outcome;
    }

    /**
     * The round's checkpoint: the held base plus the assignment's delta when it offers one for a
     * blob this device holds (the task's download_delta_codec), else the full download, which
     * the cache keeps and the next check-in names as a base.
     */
    private UpdateCodec.Decoded checkpoint(Assignment a) throws java.io.IOException, InterruptedException {
        if (!a.checkpointDeltaSha256.isEmpty()) {
            byte[] base = cache.get(a.checkpointBaseSha256);
            if (base != null) {
                try {
                    UpdateCodec.Decoded global = DeltaDownload.apply(base,
                            client.fetchBlob(a.checkpointDeltaUrl, a.checkpointDeltaSha256, cache));
                    stats.deltaDownloads++;
                    return global;
                } catch (FedgeClient.ApiException | ProtocolException e) { // gone, or not this base's: the full one
                    stats.lastDeltaFailure = e.getMessage();
                }
            }
        }
        return UpdateCodec.decode(client.fetchBlob(a.checkpointUrl, a.checkpointSha256, cache), null);
    }

    private RoundOutcome attempt(double longPollS) throws Exception {
        DeviceState now = state.get();
        InstalledReleases installed = releases;
        CheckinResponse response = installed == null ? client.checkin(now, cache.keys(), longPollS)
                : client.checkin(now, cache.keys(), longPollS, installed.channel, installed.sequence());
        if (response.release != null && installed != null && now.unmetered) {
            // A newer model to infer with: on an unmetered network only, verified, swapped in.
            installed.install(response.release, (url, sha) -> client.fetchBlob(url, sha, cache));
        }
        if (!response.assigned()) {
            return new RoundOutcome("retry", response.retryAt, response.reason);
        }
        Assignment a = response.assignment;
        stats.roundsJoined++;
        stats.lastRound = a.round;
        byte[] model = client.fetchBlob(a.modelUrl, a.modelSha256, cache);
        UpdateCodec.Decoded global = checkpoint(a);
        if (a.plan.evaluateOnly) {
            return evaluationRound(a, model, global);
        }
        if (clock.getAsDouble() + trainer.estimateSeconds(a.plan) + SAFETY_MARGIN_S > a.reportDeadline) {
            return abandon("cannot finish before the reporting deadline");
        }
        float[] c = null;
        float[] ci = null;
        int[] counts = global.counts;
        if (a.plan.scaffold) {
            if (a.controlUrl.isEmpty()) {
                throw new ProtocolException("a SCAFFOLD assignment without the server control variate", "bad_request");
            }
            c = UpdateCodec.decode(client.fetchBlob(a.controlUrl, a.controlSha256, cache), null).values;
            ci = kept.controlFor(a.taskId);
            if (ci == null || ci.length != c.length) {
                ci = new float[c.length];
            }
        }
        if (!a.plan.secagg.isEmpty()) {
            return secureRound(a, model, global, longPollS, c, ci);
        }
        if (minDpNoise > 0) {
            throw new ProtocolException("this device takes part only under distributed DP (a noise multiplier of at "
                    + "least " + minDpNoise + "); the round has no secure aggregation", "dp_floor");
        }
        CodecSpec spec = a.plan.codecSpec();
        if (a.plan.scaffold) {
            counts = new int[2 * global.counts.length]; // the model delta's tensors, then the control delta's
            System.arraycopy(global.counts, 0, counts, 0, global.counts.length);
            System.arraycopy(global.counts, 0, counts, global.counts.length, global.counts.length);
        }
        TrainedDelta trained = TrainedDelta.train(trainer, model, a, global, c, ci);
        if (clock.getAsDouble() + SAFETY_MARGIN_S / 5 > a.reportDeadline) {
            return abandon("training ended after the reporting deadline");
        }
        float[] toSend = trained.delta;
        if (spec.topk > 0) { // error feedback: this update plus what the last one in the task left out
            float[] residual = kept.residualFor(a.taskId);
            if (residual != null && residual.length == toSend.length) {
                toSend = toSend.clone();
                for (int i = 0; i < toSend.length; i++) {
                    toSend[i] += residual[i];
                }
            }
        }
        byte[] payload = UpdateCodec.encode(toSend, counts, spec, Uniforms.of(random), rotationSeed(),
                a.plan.sparseSeed);
        LocalTrainer.Result result = trained.result;
        UploadMeta meta = new UploadMeta(result.exampleCount, result.trainLoss, result.evalLoss, result.evalAccuracy,
                result.evalCount, a.plan.reportClipBit ? trained.belowClip : null, result.dpSgd);
        try {
            client.upload(a, payload, meta);
        } catch (FedgeClient.ApiException e) {
            stats.rejected++;
            return new RoundOutcome("rejected", 0, e.getMessage());
        }
        recordTraining(trained);
        if (trained.nextControl != null) { // c_i moves only once its delta is acknowledged, by what was folded
            float[] next = spec.topk > 0 ? trained.nextControl  // error feedback carries the rest
                    : Scaffold.afterSent(ci, UpdateCodec.decode(payload, counts).values);
            kept.keepControl(a.taskId, next);
        }
        if (spec.topk > 0) { // likewise what a top-k upload left out
            float[] sent = UpdateCodec.decode(payload, counts).values;
            float[] left = new float[toSend.length];
            for (int i = 0; i < left.length; i++) {
                left[i] = toSend[i] - sent[i];
            }
            kept.keepResidual(a.taskId, left);
        }
        return uploaded(payload.length, trained, payload.length + " bytes, round " + a.round);
    }

    /** Federated evaluation: the checkpoint on the local holdout, reported as counts; no training. */
    private RoundOutcome evaluationRound(Assignment a, byte[] model, UpdateCodec.Decoded global) throws Exception {
        LocalTrainer.Evaluation e = trainer.evaluate(model, a.modelSha256, global.values, global.counts, a.plan);
        if (e.examples < 1) {
            return abandon("no local holdout examples to evaluate on");
        }
        try {
            client.reportEvaluation(a, e.toJson());
        } catch (FedgeClient.ApiException ex) {
            stats.rejected++;
            return new RoundOutcome("rejected", 0, ex.getMessage());
        }
        stats.evaluations++;
        return new RoundOutcome("evaluated", 0, e.examples + " examples, round " + a.round);
    }

    /** A SecAgg round: the update travels masked on the round's shared grid (secagg.SecAggRound). */
    private RoundOutcome secureRound(Assignment a, byte[] model, UpdateCodec.Decoded global, double longPollS,
                                     float[] c, float[] ci) throws Exception {
        SecAggRound.Outcome done;
        try {
            // With SCAFFOLD the masked vector is the model delta followed by the control delta.
            done = SecAggRound.run(client, a, () -> TrainedDelta.train(trainer, model, a, global, c, ci), secureRandom,
                    random, longPollS, clock, minDpNoise);
        } catch (FedgeClient.ApiException e) {
            stats.rejected++;
            return new RoundOutcome("rejected", 0, e.getMessage());
        }
        if (done.trained != null) {
            recordTraining(done.trained);
        }
        if (done.payloadBytes == 0) {
            return new RoundOutcome(done.outcome, 0, done.detail);
        }
        if (done.trained.nextControl != null) { // its masked input is in: c_i moves
            kept.keepControl(a.taskId, done.trained.nextControl);
        }
        return uploaded(done.payloadBytes, done.trained, done.detail + ", round " + a.round);
    }

    private void recordTraining(TrainedDelta trained) {
        stats.lastTrainLoss = trained.result.trainLoss;
        stats.lastEvalAccuracy = trained.result.evalAccuracy;
    }

    private RoundOutcome uploaded(int payloadBytes, TrainedDelta trained, String detail) {
        stats.uploads++;
        stats.bytesUp += payloadBytes;
        stats.float32Bytes += 4L * trained.delta.length;
        return new RoundOutcome("uploaded", 0, detail);
    }

    private long rotationSeed() {
        long seed;
        do {
            seed = random.nextLong() & Long.MAX_VALUE;
        } while (seed == 0);
        return seed;
    }

    private RoundOutcome abandon(String why) {
        stats.abandoned++;
        return new RoundOutcome("abandoned", 0, why);
    }

    /** Runs rounds until {@code uploads} succeeded or {@code deadlineS} (unix seconds) passes. */
    public void runUntil(int uploads, double deadlineS, double longPollS, Backoff.Sleeper sleeper,
                         java.util.function.Consumer<RoundOutcome> onRound) throws Exception {
        runUntil(uploads, 0, deadlineS, longPollS, sleeper, onRound);
    }

    /** As above, until {@code uploads} updates and {@code evaluations} evaluation reports are sent. */
    public void runUntil(int uploads, int evaluations, double deadlineS, double longPollS, Backoff.Sleeper sleeper,
                         java.util.function.Consumer<RoundOutcome> onRound) throws Exception {
        Backoff backoff = Backoff.defaults(random);
        int failures = 0;
        while ((stats.uploads < uploads || stats.evaluations < evaluations) && clock.getAsDouble() < deadlineS) {
            RoundOutcome outcome;
            try {
                outcome = runOnce(longPollS);
                failures = 0;
            } catch (IOException e) {
                // the client already retried; back off longer before the next check-in
                outcome = new RoundOutcome("error", 0, e.toString());
                sleeper.sleep((long) (backoff.delaySeconds(failures++) * 1000));
            }
            onRound.accept(outcome);
            if (outcome.retryAt > 0) { // "come back at T", or a refusal's wait
                sleeper.sleep((long) (Backoff.untilRetryAt(outcome.retryAt, clock.getAsDouble(), 60.0) * 1000));
            }
        }
    }
}
