package dev.fedge.sample;

import android.app.Activity;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.widget.Button;
import android.widget.EditText;
import android.widget.TextView;

/** Status, settings, and a "run now" button that skips the scheduling constraints for demos. */
public final class MainActivity extends Activity {
    private TextView status;
    private EditText coordinator;
    private EditText population;
    private EditText dpFloor;
    private final Handler main = new Handler(Looper.getMainLooper());

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        status = findViewById(R.id.status);
        coordinator = findViewById(R.id.coordinator);
        population = findViewById(R.id.population);
        coordinator.setText(FedgeRunner.prefs(this).getString("coordinator", FedgeRunner.DEFAULT_COORDINATOR));
        population.setText(FedgeRunner.prefs(this).getString("population", FedgeRunner.DEFAULT_POPULATION));
        dpFloor = findViewById(R.id.dp_floor);
        dpFloor.setText(FedgeRunner.prefs(this).getString("dp_floor", ""));
        Button runNow = findViewById(R.id.run_now);
        runNow.setOnClickListener(v -> {
            saveSettings();
            runNow.setEnabled(false);
            status.setText("checking in...");
            new Thread(() -> {
                String line;
                try {
                    line = "run now: " + FedgeRunner.runOnce(getApplicationContext());
                } catch (Exception e) {
                    line = "run now failed: " + e;
                }
                String shown = line;
                main.post(() -> {
                    runNow.setEnabled(true);
                    status.setText(shown + "\n\n" + FedgeRunner.status(this));
                });
            }, "fedge-run-now").start();
        });
        Button schedule = findViewById(R.id.schedule);
        schedule.setOnClickListener(v -> {
            saveSettings();
            Scheduling.schedule(getApplicationContext(), 0);
            status.setText("scheduled: runs when charging, on Wi-Fi and idle\n\n" + FedgeRunner.status(this));
        });
    }

    @Override
    protected void onResume() {
        super.onResume();
        status.setText(FedgeRunner.status(this));
    }

    private void saveSettings() {
        String url = coordinator.getText().toString().trim();
        String pop = population.getText().toString().trim();
        android.content.SharedPreferences prefs = FedgeRunner.prefs(this);
        boolean changed = !url.equals(prefs.getString("coordinator", "")) || !pop.equals(prefs.getString("population", ""));
        android.content.SharedPreferences.Editor edit = prefs.edit().putString("coordinator", url).putString("population", pop)
                .putString("dp_floor", dpFloor.getText().toString().trim());
        if (changed) {
            edit.remove("token"); // a new coordinator or population means registering again
        }
        edit.apply();
    }
}
