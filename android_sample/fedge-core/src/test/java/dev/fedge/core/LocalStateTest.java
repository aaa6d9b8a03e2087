package dev.fedge.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertNull;

import java.io.File;
import java.nio.file.Files;
import org.junit.Test;

public class LocalStateTest {
    @Test
    public void savedArraysSurviveANewProcessAndNamesAreChecked() throws Exception {
        File dir = Files.createTempDirectory("fedge-state").toFile();
        LocalState state = new LocalState(new File(dir, "nested"));
        assertNull(state.load("control-t"));
        state.save("control-t", new float[] {1.5f, -2f, 0f});
        assertArrayEquals(new float[] {1.5f, -2f, 0f}, new LocalState(new File(dir, "nested")).load("control-t"), 0f);
        try {
            state.save("../escape", new float[] {1f});
            org.junit.Assert.fail("a path outside the state folder was accepted");
        } catch (IllegalArgumentException expected) {
            // names are plain file names
        }
    }
}
