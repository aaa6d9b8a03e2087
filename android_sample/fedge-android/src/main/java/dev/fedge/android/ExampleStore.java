package dev.fedge.android;

import android.content.ContentValues;
import android.content.Context;
import android.database.Cursor;
import android.database.sqlite.SQLiteDatabase;
import android.database.sqlite.SQLiteOpenHelper;
import dev.fedge.core.Examples;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongSupplier;
import java.util.regex.Pattern;

/**
 * An on-device example store the app feeds itself: each example is a feature vector and an
 * integer label, kept in the app's private storage (SQLite, {@code databases/fedge-examples-NAME.db})
 * so that it survives process death, at most {@code maxExamples} of them (adding beyond drops the
 * oldest) and none older than {@code timeToLiveMs} (dropped as they expire). The training job
 * reads a snapshot ({@link #examples()}); the data never leaves the device, only weight deltas do.
 *
 * <p>Like federated-compute's ExampleStore, the app owns collection and retention; fedge asks
 * for the examples when a round needs them.
 */
public final class ExampleStore implements AutoCloseable {
    public static final int DEFAULT_MAX_EXAMPLES = 5_000;
    public static final long DEFAULT_TIME_TO_LIVE_MS = 30L * 24 * 3600 * 1000; // 30 days
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9_-]{1,64}");
    private static final int SCHEMA_VERSION = 1;

    private final Helper helper;
    private final int maxExamples;
    private final long timeToLiveMs;
    private final LongSupplier clockMs;

    private ExampleStore(Helper helper, int maxExamples, long timeToLiveMs, LongSupplier clockMs) {
        this.helper = helper;
        this.maxExamples = maxExamples;
        this.timeToLiveMs = timeToLiveMs;
        this.clockMs = clockMs;
    }

    /** The store {@code name} with the default cap (5,000 examples) and time to live (30 days). */
    public static ExampleStore open(Context context, String name) {
        return open(context, name, DEFAULT_MAX_EXAMPLES, DEFAULT_TIME_TO_LIVE_MS);
    }

    public static ExampleStore open(Context context, String name, int maxExamples, long timeToLiveMs) {
        return open(context, name, maxExamples, timeToLiveMs, System::currentTimeMillis);
    }

    /** With the clock injected (tests). */
    static ExampleStore open(Context context, String name, int maxExamples, long timeToLiveMs, LongSupplier clockMs) {
        if (name == null || !NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("an example store's name is 1 to 64 letters, digits, '-' or '_'");
        }
        if (maxExamples < 1 || timeToLiveMs < 1) {
            throw new IllegalArgumentException("maxExamples and timeToLiveMs must be positive");
        }
        return new ExampleStore(new Helper(context.getApplicationContext(), "fedge-examples-" + name + ".db"),
                maxExamples, timeToLiveMs, clockMs);
    }

    /**
     * Adds one example (features, then its label); every example of a store has as many
     * features as the first. Expired examples go first, then the oldest beyond the cap.
     */
    public synchronized void add(float[] features, int label) {
        if (features == null || features.length == 0) {
            throw new IllegalArgumentException("an example needs at least one feature");
        }
        for (float f : features) {
            if (Float.isNaN(f) || Float.isInfinite(f)) {
                throw new IllegalArgumentException("features must be finite");
            }
        }
        SQLiteDatabase db = helper.getWritableDatabase();
        db.beginTransaction();
        try {
            int width = width(db);
            if (width > 0 && width != features.length) {
                throw new IllegalArgumentException("this store's examples have " + width + " features, not "
                        + features.length);
            }
            long now = clockMs.getAsLong();
            ContentValues row = new ContentValues();
            row.put("added_ms", now);
            row.put("label", label);
            row.put("width", features.length);
            row.put("features", pack(features));
            db.insertOrThrow("examples", null, row);
            expire(db, now);
            db.execSQL("DELETE FROM examples WHERE id NOT IN (SELECT id FROM examples ORDER BY id DESC LIMIT "
                    + maxExamples + ")");
            db.setTransactionSuccessful();
        } finally {
            db.endTransaction();
        }
    }

    /** How many examples are kept now (expired ones are dropped first). */
    public synchronized int count() {
        SQLiteDatabase db = helper.getWritableDatabase();
        expire(db, clockMs.getAsLong());
        try (Cursor c = db.rawQuery("SELECT COUNT(*) FROM examples", null)) {
            c.moveToFirst();
            return c.getInt(0);
        }
    }

    public synchronized void clear() {
        helper.getWritableDatabase().delete("examples", null, null);
    }

    /**
     * The examples kept now, oldest first, for a training round (the job splits off its fixed
     * holdout as it does a CSV's); null when there are none.
     */
    public synchronized Examples examples() {
        SQLiteDatabase db = helper.getWritableDatabase();
        expire(db, clockMs.getAsLong());
        List<float[]> xs = new ArrayList<>();
        List<Integer> ys = new ArrayList<>();
        try (Cursor c = db.rawQuery("SELECT features, label FROM examples ORDER BY id", null)) {
            while (c.moveToNext()) {
                xs.add(unpack(c.getBlob(0)));
                ys.add(c.getInt(1));
            }
        }
        if (xs.isEmpty()) {
            return null;
        }
        int[] y = new int[ys.size()];
        for (int i = 0; i < y.length; i++) {
            y[i] = ys.get(i);
        }
        return new Examples(xs.toArray(new float[0][]), y);
    }

    @Override
    public synchronized void close() {
        helper.close();
    }

    private void expire(SQLiteDatabase db, long now) {
        db.delete("examples", "added_ms <= ?", new String[] {Long.toString(now - timeToLiveMs)});
    }

    private static int width(SQLiteDatabase db) {
        try (Cursor c = db.rawQuery("SELECT width FROM examples LIMIT 1", null)) {
            return c.moveToFirst() ? c.getInt(0) : 0;
        }
    }

    private static byte[] pack(float[] features) {
        ByteBuffer b = ByteBuffer.allocate(4 * features.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : features) {
            b.putFloat(f);
        }
        return b.array();
    }

    private static float[] unpack(byte[] blob) {
        ByteBuffer b = ByteBuffer.wrap(blob).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[blob.length / 4];
        for (int i = 0; i < out.length; i++) {
            out[i] = b.getFloat(4 * i);
        }
        return out;
    }

    private static final class Helper extends SQLiteOpenHelper {
        Helper(Context context, String file) {
            super(context, file, null, SCHEMA_VERSION);
        }

        @Override
        public void onCreate(SQLiteDatabase db) {
            db.execSQL("CREATE TABLE examples (id INTEGER PRIMARY KEY AUTOINCREMENT, added_ms INTEGER NOT NULL, "
                    + "label INTEGER NOT NULL, width INTEGER NOT NULL, features BLOB NOT NULL)");
        }

        @Override
        public void onUpgrade(SQLiteDatabase db, int oldVersion, int newVersion) {
            // One schema so far.
        }
    }
}
