package dev.fedge.core.secagg;

import com.google.gson.JsonObject;
import dev.fedge.core.Assignment;
import dev.fedge.core.FedgeClient;
import dev.fedge.core.LocalTrainer;
import dev.fedge.core.ProtocolException;
import dev.fedge.core.SparseSubset;
import dev.fedge.core.TrainedDelta;
import dev.fedge.core.UploadMeta;
import dev.fedge.core.secagg.SecAggMessages.EncryptedShare;
import dev.fedge.core.secagg.SecAggMessages.Params;
import dev.fedge.core.secagg.SecAggMessages.RevealedShare;
import dev.fedge.core.secagg.SecAggMessages.View;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.DoubleSupplier;

/**
 * One SecAgg round over HTTP (device_runtime/secagg_session.py): the phases of
 * {@link SecAggClient} in order, each after the coordinator closed the one before
 * (long-polled). Training runs on its own thread while the keys are exchanged, so the
 * key phases add little to the round; the update is put on the round's grid and masked
 * once the coordinator says who shared keys.
 */
public final class SecAggRound {
    private SecAggRound() {
    }

    public static final class Outcome {
        /** uploaded | excluded | failed | late. */
        public final String outcome;
        public final String detail;
        public final int payloadBytes;
        public final TrainedDelta trained; // null when the round ended before training did

        Outcome(String outcome, String detail, int payloadBytes, TrainedDelta trained) {
            this.outcome = outcome;
            this.detail = detail;
            this.payloadBytes = payloadBytes;
            this.trained = trained;
        }
    }

    /**
     * @param secure draws the keys, the self-mask seed, the Shamir coefficients and the nonces
     * @param rounding draws the stochastic rounding of the grid (needs no secrecy)
     */
    public static Outcome run(FedgeClient client, Assignment a, Callable<TrainedDelta> train, SecureRandom secure,
                              Random rounding, double longPollS, DoubleSupplier clock) throws Exception {
        return run(client, a, train, secure, rounding, longPollS, clock, 0.0);
    }

    /** As above; {@code minDpNoise} > 0: refuse, before sharing keys, a round whose devices' noise adds up to less. */
    public static Outcome run(FedgeClient client, Assignment a, Callable<TrainedDelta> train, SecureRandom secure,
                              Random rounding, double longPollS, DoubleSupplier clock, double minDpNoise)
            throws Exception {
        SecAggClient proto = new SecAggClient(SecAggMessages.roundContext(a.taskId, a.round), secure);
        client.secaggPost(a, "keys", proto.publicKeys().toJson());
        ExecutorService executor = Executors.newSingleThreadExecutor(runnable -> {
            Thread thread = new Thread(runnable, "fedge-secagg-train");
            thread.setDaemon(true);
            return thread;
        });
        TrainedDelta trained;
        try {
            Future<TrainedDelta> training = executor.submit(train);
            View view = waitPast(client, a, longPollS, "selecting", "advertising");
            if (view.params == null || view.myIndex == 0) {
                return new Outcome("excluded", view.reason.isEmpty() ? "not in the roster (" + view.state + ")"
                        : view.reason, 0, null);
            }
            DistributedDp.checkNoiseFloor(view.params, view.keys.size(), minDpNoise);
            List<JsonObject> shares = new ArrayList<>();
            for (EncryptedShare share : proto.shareKeys(view.myIndex, view.params, view.keys)) {
                shares.add(share.toJson());
            }
            client.secaggPost(a, "shares", SecAggMessages.sharesMessage(shares));
            try {
                trained = training.get();
            } catch (ExecutionException e) {
                throw e.getCause() instanceof Exception ? (Exception) e.getCause() : e;
            }
        } finally {
            executor.shutdownNow();
        }
        View view = waitPast(client, a, longPollS, "sharing");
        if (!view.state.equals("reporting")) {
            return new Outcome("failed", view.reason.isEmpty() ? view.state : view.reason, 0, trained);
        }
        if (clock.getAsDouble() > a.reportDeadline) {
            return new Outcome("late", "past the reporting deadline before the masked input", 0, trained);
        }
        Params p = view.params;
        // Distributed DP: the device's share of the noise goes on before masking; the server never sees less.
        long[] codes = p.distributedDp()
                ? DistributedDp.encode(trained.delta, p, rounding::nextDouble, DistributedDp.osNoise(p, secure))
                : Ring.quantize(trained.delta, p.quantBits, p.valueRange, p.rotationSeed, rounding::nextDouble);
        if (p.kept > 0) { // sparse: only the round's subset of the rotated codes (the rotation seed's)
            int[] positions = SparseSubset.positions(p.rotationSeed, p.length, p.kept);
            long[] subset = new long[p.kept];
            for (int i = 0; i < p.kept; i++) {
                subset[i] = codes[positions[i]];
            }
            codes = subset;
        }
        if (p.extra > 1) {
            throw new ProtocolException("this client knows one extra slot (the clipping bit), not " + p.extra,
                    "bad_params");
        }
        if (p.extra == 1) { // the adaptive-clipping bit travels masked, summed with everyone else's
            codes = Arrays.copyOf(codes, codes.length + 1);
            codes[codes.length - 1] = p.distributedDp() // with its own noise under distributed DP
                    ? DistributedDp.encodeBit(trained.belowClip, p.modulusBits,
                            DistributedDp.osNoise(p.dpCountVariance, secure).getAsLong())
                    : (trained.belowClip ? 1 : 0);
        }
        byte[] payload = Ring.pack(proto.maskedInput(codes, view.sharers, view.inbox), p.modulusBits);
        LocalTrainer.Result r = trained.result;
        client.upload(a, payload, new UploadMeta(r.exampleCount, r.trainLoss, r.evalLoss, r.evalAccuracy, r.evalCount,
                null, r.dpSgd));
        view = waitPast(client, a, longPollS, "reporting");
        if (view.state.equals("unmasking") && view.unmask != null) {
            List<JsonObject> reveals = new ArrayList<>();
            for (RevealedShare share : proto.unmask(view.unmask)) {
                reveals.add(share.toJson());
            }
            client.secaggPost(a, "reveals", SecAggMessages.sharesMessage(reveals));
        }
        return new Outcome("uploaded", payload.length + " bytes masked", payload.length, trained);
    }

    private static View waitPast(FedgeClient client, Assignment a, double longPollS, String... states)
            throws IOException, InterruptedException {
        View view = View.fromJson(client.secaggView(a, "", 0.0));
        while (Arrays.asList(states).contains(view.state)) {
            view = View.fromJson(client.secaggView(a, view.state, longPollS));
        }
        return view;
    }
}
